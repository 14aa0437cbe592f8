//! Given/when/then tests for the cabinet aggregate (filled in below).
