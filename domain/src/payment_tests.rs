//! Given/when/then tests for the payment aggregate (filled in below).
