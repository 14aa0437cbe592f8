//! WeChat Pay Score (APIv3) [PAYMENTS.md §1]: the adapter, the sandbox and the
//! notification callback. (To be built.)
