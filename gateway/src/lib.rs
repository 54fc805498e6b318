//! HTTP publishing gateway. Not built yet: see issue 6.
