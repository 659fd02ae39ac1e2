//! Answers cut short by the provider finish anyway: the real clients
//! against the fake upstream (issue 28 items 1 to 3 and 5).
