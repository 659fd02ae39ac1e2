//! A thread's title from its first question, so a thread made without one
//! is found by its words in the list (and its search): the question's
//! first line, cut at a word boundary to about 80 characters, with an
//! ellipsis when cut. Used where a question names a thread: the chat
//! routes' new threads, and the thread actor for an untitled thread's
//! first question.

/// Characters of the title before an ellipsis.
pub const TITLE_CHARS: usize = 80;

/// The title `question` gives a thread: its first non-blank line, trimmed;
/// past `TITLE_CHARS` characters it is cut at the last space within
/// them (or at `TITLE_CHARS` for a word longer than that) and ends in `…`.
pub fn title_of(question: &str) -> String {
    let line = question.trim().lines().next().unwrap_or_default().trim_end();
    let Some((end, _)) = line.char_indices().nth(TITLE_CHARS) else { return line.to_owned() };
    let head = &line[..end];
    // A cut between two words keeps the last whole word; inside a word it
    // goes back to the space before it (unless that leaves too little).
    let cut = match line[end..].starts_with(char::is_whitespace) {
        true => head,
        false => match head.rfind(char::is_whitespace) {
            Some(space) if head[..space].chars().count() >= TITLE_CHARS / 2 => &head[..space],
            _ => head,
        },
    };
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_is_the_first_line_cut_at_a_word() {
        assert_eq!(title_of("  Hello\nworld"), "Hello");
        assert_eq!(title_of("\n\n  What is Rust?  \nmore"), "What is Rust?");
        let exact = "a".repeat(TITLE_CHARS);
        assert_eq!(title_of(&exact), exact, "80 characters are kept whole");
        // A word across the cut goes whole.
        let words = "word ".repeat(30);
        let title = title_of(&words);
        assert!(title.ends_with("word…"), "{title}");
        assert!(title.chars().count() <= TITLE_CHARS + 1);
        assert!(title.starts_with("word word"));
        // A cut that falls between words keeps the word before it.
        let between = format!("{} tail", "x".repeat(TITLE_CHARS));
        assert_eq!(title_of(&between), format!("{}…", "x".repeat(TITLE_CHARS)));
        // One long word is cut where it must be, by characters not bytes.
        let long = "é".repeat(100);
        assert_eq!(title_of(&long).chars().count(), TITLE_CHARS + 1);
        assert!(title_of(&long).ends_with('…'));
    }
}
