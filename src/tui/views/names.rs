//! Case names that fit a column: names that fit stay whole; else the
//! prefix every case shares is dropped (`BraTS19_`), and what is still too
//! long loses its middle, so rows stay distinguishable at 80 columns. A
//! leaf: imports nothing of the crate.

/// Labels for `names` (in order), each at most `width` characters.
pub fn short_case_names(names: &[&str], width: usize) -> Vec<String> {
    if names.iter().all(|n| n.chars().count() <= width) {
        return names.iter().map(|n| n.to_string()).collect();
    }
    let prefix = shared_prefix(names);
    names
        .iter()
        .map(|name| shorten_middle(&name[prefix..], width))
        .collect()
}

/// Bytes of the prefix all distinct names share, cut after a `_`, `-` or
/// `.` so that words stay whole; 0 unless two or more names differ.
fn shared_prefix(names: &[&str]) -> usize {
    let Some((first, rest)) = names.split_first() else {
        return 0;
    };
    if rest.iter().all(|n| n == first) {
        return 0;
    }
    let mut common = first.len();
    for name in rest {
        common = first
            .char_indices()
            .zip(name.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, c), _)| i + c.len_utf8())
            .min(common);
    }
    first[..common]
        .rfind(['_', '-', '.'])
        .map_or(0, |i| i + 1)
        // Never swallow a whole name.
        .min(
            names
                .iter()
                .map(|n| n.len())
                .min()
                .unwrap_or(0)
                .saturating_sub(1),
        )
}

/// `name` if it fits in `width` characters, else its start and end around
/// an ellipsis.
fn shorten_middle(name: &str, width: usize) -> String {
    let count = name.chars().count();
    if count <= width || width < 3 {
        return name.to_string();
    }
    let tail = (width - 1) / 2;
    let head = width - 1 - tail;
    let start: String = name.chars().take(head).collect();
    let end: String = name.chars().skip(count - tail).collect();
    format!("{start}…{end}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brats_names_drop_their_shared_prefix_and_stay_distinct() {
        let names = [
            "BraTS19_CBICA_AAB_1",
            "BraTS19_2013_10_1",
            "BraTS19_CBICA_AAP_1",
        ];
        assert_eq!(short_case_names(&names, 24), names, "they fit whole");
        let short = short_case_names(&names, 12);
        assert_eq!(short, ["CBICA_AAB_1", "2013_10_1", "CBICA_AAP_1"]);
        let narrow = short_case_names(&names, 7);
        assert_eq!(narrow, ["CBI…B_1", "201…0_1", "CBI…P_1"]);
        assert!(narrow.iter().all(|n| n.chars().count() <= 7));
    }

    #[test]
    fn one_case_or_short_names_are_left_alone() {
        assert_eq!(short_case_names(&["X_1", "X_1"], 10), ["X_1", "X_1"]);
        assert_eq!(short_case_names(&["A", "B"], 10), ["A", "B"]);
        assert_eq!(
            short_case_names(&["phantom_001", "phantom_002"], 11),
            ["phantom_001", "phantom_002"]
        );
        assert_eq!(
            short_case_names(&["phantom_001", "phantom_002"], 10),
            ["001", "002"]
        );
        assert!(short_case_names(&[], 10).is_empty());
    }
}
