//! An error on one line: its message, then each of its causes after `: `,
//! each said once, as main and every log line write errors.
use std::{error::Error, fmt};

/// Writes `self.0` and its chain of causes on one line. socktrace's errors
/// never repeat their cause in their message; a cause whose text the line
/// already holds (aya 0.14's errors repeat theirs) is not written again.
pub struct ErrorLine<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = error.source();
        }
        f.write_str(&line)
    }
}

#[cfg(test)]
mod tests;
