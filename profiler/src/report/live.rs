//! The per-interval view: redrawn in place on a terminal (like `top`), plain lines otherwise.
use std::io::Write;

use super::text::interval_lines;
use crate::model::SiteReport;

pub struct LiveView<W: Write> {
    out: W,
    refresh_in_place: bool,
    top: usize,
}

impl<W: Write> LiveView<W> {
    pub fn new(out: W, refresh_in_place: bool, top: usize) -> Self {
        LiveView { out, refresh_in_place, top }
    }

    pub fn draw(&mut self, t_s: f64, sites: &[SiteReport]) {
        let block = interval_lines(t_s, sites, self.top);
        let _ = if self.refresh_in_place {
            // home, clear screen, then the block
            write!(self.out, "\x1b[H\x1b[2J{block}")
        } else {
            write!(self.out, "{block}")
        };
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_have_no_escape_codes_and_terminal_view_clears() {
        let mut plain = LiveView::new(Vec::new(), false, 5);
        plain.draw(1.0, &[]);
        assert!(!String::from_utf8(plain.out).unwrap().contains('\x1b'));
        let mut tty = LiveView::new(Vec::new(), true, 5);
        tty.draw(1.0, &[]);
        assert!(String::from_utf8(tty.out).unwrap().starts_with("\x1b[H\x1b[2J"));
    }
}
