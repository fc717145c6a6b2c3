//! The host crate that `docs/guides/custom-step.md` builds, file by file: `my_deploy`'s `src/*.rs` and its
//! `tests/promote.rs` (here `tests_promote.rs`). `cargo test` compiles them and runs the guide's tests;
//! `tests/docs.rs` checks that the guide shows these files exactly, so the guide cannot drift from code that works.
// The guide's library is for a host to use: not every item is used here.
#![allow(dead_code, missing_docs, unreachable_pub)]

// The guide's `tests/promote.rs` imports `my_deploy::...`, as a host crate's integration test does.
extern crate self as my_deploy;

mod commands;
mod promote;
mod release;
mod steps;
mod values;

mod tests_promote;
