//! The one column aligner: every human table and stream lays out its header
//! and rows through [`Columns`].

/// How a cell sits in its column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// One column: its title, width and alignment, and the spaces before it.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    title: &'static str,
    width: usize,
    align: Align,
    gap: usize,
}

impl Column {
    /// A left-aligned column `width` wide; a longer cell pushes the rest of
    /// the row right.
    pub const fn left(title: &'static str, width: usize) -> Column {
        Column {
            title,
            width,
            align: Align::Left,
            gap: 1,
        }
    }

    /// A right-aligned column `width` wide.
    pub const fn right(title: &'static str, width: usize) -> Column {
        Column {
            align: Align::Right,
            ..Column::left(title, width)
        }
    }

    /// The same column, `spaces` apart from the one before it (one by
    /// default).
    pub const fn after_gap(self, spaces: usize) -> Column {
        Column {
            gap: spaces,
            ..self
        }
    }
}

/// The columns of a table or stream, in order.
#[derive(Clone, Debug, Default)]
pub struct Columns(Vec<Column>);

impl Columns {
    pub fn new() -> Columns {
        Columns::default()
    }

    pub fn with(mut self, column: Column) -> Columns {
        self.0.push(column);
        self
    }

    pub fn with_all(mut self, columns: impl IntoIterator<Item = Column>) -> Columns {
        self.0.extend(columns);
        self
    }

    /// Widths fitted to `rows` and, when the header is printed, the titles
    /// (a table printed at once): each column as wide as its widest cell,
    /// and the last one not padded.
    pub fn fitted<S: AsRef<str>>(mut self, rows: &[Vec<S>], with_header: bool) -> Columns {
        let last = self.0.len().saturating_sub(1);
        for (i, column) in self.0.iter_mut().enumerate() {
            column.width = if i == last {
                0
            } else {
                rows.iter()
                    .filter_map(|row| row.get(i))
                    .map(|cell| width_of(cell.as_ref()))
                    .chain(with_header.then(|| width_of(column.title)))
                    .max()
                    .unwrap_or(0)
            };
        }
        self
    }

    /// The titles, aligned as the rows, without a newline.
    pub fn header(&self) -> String {
        let titles: Vec<&str> = self.0.iter().map(|column| column.title).collect();
        self.line(&titles)
    }

    /// Appends the header and a newline.
    pub fn push_header(&self, out: &mut String) {
        out.push_str(&self.header());
        out.push('\n');
    }

    /// One row, without trailing spaces or a newline. Cells past the last
    /// column are ignored; missing ones are blank.
    pub fn line<S: AsRef<str>>(&self, cells: &[S]) -> String {
        let mut line = String::new();
        for (i, column) in self.0.iter().enumerate() {
            if i > 0 {
                line.extend(std::iter::repeat_n(' ', column.gap));
            }
            let cell = cells.get(i).map_or("", AsRef::as_ref);
            let padding = column.width.saturating_sub(width_of(cell));
            if column.align == Align::Right {
                line.extend(std::iter::repeat_n(' ', padding));
            }
            line.push_str(cell);
            if column.align == Align::Left {
                line.extend(std::iter::repeat_n(' ', padding));
            }
        }
        line.truncate(line.trim_end().len());
        line
    }

    /// Appends one row and a newline.
    pub fn push_line<S: AsRef<str>>(&self, out: &mut String, cells: &[S]) {
        out.push_str(&self.line(cells));
        out.push('\n');
    }
}

/// Characters, not bytes: what a terminal shows.
fn width_of(cell: &str) -> usize {
    cell.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Columns {
        Columns::new()
            .with(Column::left("NAME", 6))
            .with(Column::right("N", 4))
            .with(Column::left("NOTE", 0).after_gap(2))
    }

    #[test]
    fn header_and_rows_share_the_columns() {
        let columns = columns();
        assert_eq!(columns.header(), "NAME      N  NOTE");
        assert_eq!(columns.line(&["ab", "7", "x"]), "ab        7  x");
        assert_eq!(
            columns.line(&["ab", "7", ""]),
            "ab        7",
            "no trailing spaces"
        );
        assert_eq!(
            columns.line(&["abcdefgh", "12345", "x"]),
            "abcdefgh 12345  x",
            "a wide cell pushes the rest right"
        );
    }

    #[test]
    fn fitted_columns_are_as_wide_as_their_widest_cell_but_the_last() {
        let rows = vec![vec!["a", "100", "last"], vec!["abc", "2", "x"]];
        let columns = columns().fitted(&rows, true);
        assert_eq!(columns.header(), "NAME   N  NOTE");
        assert_eq!(columns.line(&rows[0]), "a    100  last");
        assert_eq!(columns.line(&rows[1]), "abc    2  x");
        let without_header = self::columns().fitted(&rows, false);
        assert_eq!(without_header.line(&rows[0]), "a   100  last");
    }

    #[test]
    fn width_counts_characters() {
        let columns = Columns::new()
            .with(Column::left("A", 3))
            .with(Column::left("B", 1));
        assert_eq!(columns.line(&["é", "x"]), "é   x");
    }
}
