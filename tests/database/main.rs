//! The server against a database server that is not at its best, over Hrana as at the edge:
//! one that refuses Tollgate (a rotated or read-only token, writes blocked over a quota),
//! one that turns requests away while it shuts down, and one that names errors as sqld
//! does (primary result codes) or as other servers do (extended ones).

mod error_codes;
mod refusals;
mod support;
mod turned_away;
