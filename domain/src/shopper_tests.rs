//! Given/when/then tests for the shopper aggregate (filled in below).
