//! Property tests of the RESP parsers: any split of a valid stream parses
//! the same, and random bytes never panic.
