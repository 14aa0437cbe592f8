//! Given/when/then tests for the order aggregate (filled in below).
