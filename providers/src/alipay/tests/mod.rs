//! Tests of the Alipay provider (beside the code): the adapter against the sandbox over
//! a real loopback HTTP server, the notification verification, and the independent
//! oracle (python-alipay-sdk).

mod callback;
mod flows;
mod harness;
mod oracle;
mod refunds;
