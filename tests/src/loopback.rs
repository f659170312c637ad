//! The HTTP server under the doubles of third-party services (Stripe, the email provider,
//! a tenant's webhook receiver, LLM providers): HTTP/1 on a free loopback port, each request
//! handed whole to the double's handler, whose answer is whole or streamed. It can be taken down, refusing connections and closing the
//! ones a client keeps alive, and brought back on the same port.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::request::Parts;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpListener,
    task::{AbortHandle, JoinHandle},
};

/// A response body written whole or chunk by chunk.
pub type StreamedBody = UnsyncBoxBody<Bytes, Infallible>;

type Handler = Arc<dyn Fn(Parts, Bytes) -> Response<StreamedBody> + Send + Sync>;

pub struct LoopbackServer {
    pub address: SocketAddr,
    handler: Handler,
    server: Mutex<Option<JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl LoopbackServer {
    /// Serves `handler` on a free loopback port; a body that fails to arrive reaches it empty.
    pub async fn start(
        handler: impl Fn(Parts, Bytes) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Self {
        Self::start_streaming(move |parts, body| handler(parts, body).map(BodyExt::boxed_unsync))
            .await
    }

    /// Serves `handler`, whose bodies may be written as they go (server-sent events).
    pub async fn start_streaming(
        handler: impl Fn(Parts, Bytes) -> Response<StreamedBody> + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self {
            address: listener.local_addr().unwrap(),
            handler: Arc::new(handler),
            server: Mutex::new(None),
            connections: Arc::default(),
        };
        server.serve(listener);
        server
    }

    /// `http://127.0.0.1:{port}`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops listening: connections are refused until [`LoopbackServer::up`].
    pub async fn down(&self) {
        let task = self.server.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let listener = TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let handler = self.handler.clone();
        let connections = self.connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let connection = tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let handler = handler.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|body| body.to_bytes())
                                .unwrap_or_default();
                            Ok::<_, Infallible>(handler(parts, body))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                connections.lock().unwrap().push(connection.abort_handle());
            }
        });
        *self.server.lock().unwrap() = Some(task);
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(task) = self.server.lock().unwrap().take() {
            task.abort();
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}
