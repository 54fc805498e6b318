//! Event contract registry (Holyfields replacement). Not built yet: see issue 5.
