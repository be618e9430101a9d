//! Sharing the candidate slots out over the clusters.

/// `total` slots shared out over groups of the given sizes (total ≤ Σ
/// sizes): one each to the nonempty groups when there are enough slots
/// (else one each to the largest), the rest in proportion to what each
/// group has left (largest remainder, ties to the lower group). Never more
/// than a group's size.
pub(super) fn allocate(sizes: &[usize], total: usize) -> Vec<usize> {
    let mut quota = vec![0usize; sizes.len()];
    let nonempty: Vec<usize> = (0..sizes.len()).filter(|&g| sizes[g] > 0).collect();
    if total < nonempty.len() {
        let mut by_size = nonempty;
        by_size.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
        for &g in &by_size[..total] {
            quota[g] = 1;
        }
        return quota;
    }
    for &g in &nonempty {
        quota[g] = 1;
    }
    let rest = (total - nonempty.len()) as u128;
    let room: Vec<u128> = sizes.iter().map(|&s| s.saturating_sub(1) as u128).collect();
    let room_total: u128 = room.iter().sum();
    if rest == 0 || room_total == 0 {
        return quota;
    }
    let mut given = 0u128;
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(sizes.len());
    for (g, &r) in room.iter().enumerate() {
        let share = rest * r;
        quota[g] += (share / room_total) as usize;
        given += share / room_total;
        remainders.push((share % room_total, g));
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, g) in remainders.iter().take((rest - given) as usize) {
        quota[g] += 1;
    }
    quota
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_is_proportional_with_one_each() {
        assert_eq!(allocate(&[10, 10, 80], 12), vec![2, 2, 8]);
        assert_eq!(allocate(&[1, 1, 98], 10), vec![1, 1, 8]);
        assert_eq!(allocate(&[5, 0, 3, 9], 2), vec![1, 0, 0, 1]);
        assert_eq!(allocate(&[2, 3], 5), vec![2, 3]);
        assert_eq!(allocate(&[4, 4, 4], 4), vec![2, 1, 1]);
        let q = allocate(&[7, 1, 300, 45, 0, 12], 99);
        assert_eq!(q.iter().sum::<usize>(), 99);
        assert!(q.iter().zip([7, 1, 300, 45, 0, 12]).all(|(&a, s)| a <= s));
    }
}
