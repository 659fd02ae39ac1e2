//! Cluster mode: an answer whose owner node dies, or stops for a deploy,
//! is continued by another node in the same message (issue 28 item 4).
