//! One node: an answer cut by `kill -9` is continued when the service
//! starts again (issue 28 item 4), unless it is too old or out of budget.
