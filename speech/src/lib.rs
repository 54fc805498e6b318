//! Speech-to-text service (TalkyTonny replacement). Not built yet: see issue 7.
