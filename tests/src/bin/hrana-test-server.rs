//! Serves a libSQL file over Hrana HTTP for trying the edge builds by hand:
//! `cargo run -p tollgate-tests --bin hrana-test-server -- DB_PATH [ADDRESS] [TOKEN]`
//! (defaults: 127.0.0.1:8080, token `dev-token`). Migrate the file first with
//! `tollgate-server --database http://ADDRESS --database-token TOKEN migrate`.

use tollgate_tests::hrana_server::{HranaServer, HranaSettings};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: hrana-test-server DB_PATH [ADDRESS] [TOKEN]");
        std::process::exit(2);
    };
    let address = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let token = args.next().unwrap_or_else(|| "dev-token".into());
    let address = address.parse().expect("ADDRESS is host:port");
    let server =
        HranaServer::start_on(path.as_ref(), &token, address, HranaSettings::default()).await;
    println!("libSQL over Hrana HTTP at {} (token {token})", server.url);
    tokio::signal::ctrl_c()
        .await
        .expect("ctrl-c can be watched");
}
