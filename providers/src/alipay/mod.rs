//! Alipay fund pre-authorization (gateway, RSA2) [PAYMENTS.md §2]: the adapter, the
//! sandbox and the notification callback. (To be built.)
