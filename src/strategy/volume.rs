//! Patient-wise suggestion (Dai et al., MICCAI 2020): a strategy's slice
//! picks vote for the volumes they come from, and whole volumes are
//! annotated. The budget still counts slices, so a volume joins only while
//! its unlabelled slices fit.

use std::collections::HashMap;
use std::hash::Hash;

/// The volumes to annotate whole, most-voted first.
///
/// Each pick (in the strategy's order) is one vote for `volume_of(pick)`;
/// ties go to the volume picked first. Volumes are taken in that order
/// while `size` (its candidate slices) keeps the total within `budget`;
/// one that does not fit is passed over for a later, smaller one. The top
/// volume is always taken, so a volume larger than a round's budget is
/// still reachable (the round then overshoots; the caller reports it).
pub fn volumes_by_vote<V: Clone + Eq + Hash>(
    picks: &[usize],
    volume_of: impl Fn(usize) -> V,
    size: impl Fn(&V) -> usize,
    budget: usize,
) -> Vec<V> {
    // (volume, votes, first pick position)
    let mut tally: Vec<(V, usize, usize)> = Vec::new();
    let mut at: HashMap<V, usize> = HashMap::new();
    for (position, &pick) in picks.iter().enumerate() {
        let volume = volume_of(pick);
        match at.get(&volume) {
            Some(&i) => tally[i].1 += 1,
            None => {
                at.insert(volume.clone(), tally.len());
                tally.push((volume, 1, position));
            }
        }
    }
    tally.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    let mut chosen = Vec::new();
    let mut total = 0;
    for (volume, _, _) in tally {
        let slices = size(&volume);
        if chosen.is_empty() || total + slices <= budget {
            total += slices;
            chosen.push(volume);
        }
        if total >= budget {
            break;
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::volumes_by_vote;

    /// Picks 0..9 belong to volumes by tens: pick p is in volume p / 10.
    fn by_tens(p: usize) -> usize {
        p / 10
    }

    #[test]
    fn the_most_voted_volumes_come_first_and_ties_go_to_the_first_picked() {
        // Votes: volume 3 ×1 (first), volume 1 ×2, volume 2 ×2, volume 0 ×1.
        let picks = [31, 12, 25, 13, 27, 4];
        let chosen = volumes_by_vote(&picks, by_tens, |_| 5, 100);
        assert_eq!(chosen, vec![1, 2, 3, 0]);
    }

    #[test]
    fn volumes_join_while_their_slices_fit_in_the_budget() {
        // Volume 1 (3 votes, 8 slices), volume 2 (2 votes, 8 slices),
        // volume 3 (1 vote, 2 slices); a budget of 10 slices.
        let picks = [10, 11, 12, 20, 21, 30];
        let sizes = |v: &usize| if *v == 3 { 2 } else { 8 };
        let chosen = volumes_by_vote(&picks, by_tens, sizes, 10);
        // Volume 2 would make 16 > 10: passed over for volume 3 (8 + 2 = 10).
        assert_eq!(chosen, vec![1, 3]);
    }

    #[test]
    fn the_top_volume_is_taken_even_when_larger_than_the_budget() {
        let chosen = volumes_by_vote(&[50, 51, 60], by_tens, |_| 155, 20);
        assert_eq!(chosen, vec![5]);
    }

    #[test]
    fn no_picks_choose_no_volume() {
        assert!(volumes_by_vote(&[], by_tens, |_| 1, 10).is_empty());
    }
}
