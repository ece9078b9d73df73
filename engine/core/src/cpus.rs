//! CPU lists as `--cpu-list` takes them (`2-9,12`): for the engine's shards and loadgen's
//! workers alike, so both accept exactly the same lists.

/// A `--cpu-list` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuListError {
    #[error("bad CPU `{0}`")]
    BadCpu(String),
    /// A range whose end is below its start, or a CPU number of 4096 or more.
    #[error("bad CPU range `{0}`")]
    BadRange(String),
    #[error("CPU {0} listed twice")]
    Twice(usize),
    #[error("--cpu-list is empty")]
    Empty,
}

/// Parses `LIST` (`N` or `A-B`, comma-separated, spaces allowed), in the given order.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, CpuListError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| CpuListError::BadCpu(part.to_string()))
        };
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let v = num(part)?;
                (v, v)
            }
        };
        if lo > hi || hi >= 4096 {
            return Err(CpuListError::BadRange(part.to_string()));
        }
        for c in lo..=hi {
            if out.contains(&c) {
                return Err(CpuListError::Twice(c));
            }
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err(CpuListError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_ranges_and_refusals() {
        assert_eq!(parse_cpu_list("2-4,12").unwrap(), vec![2, 3, 4, 12]);
        assert_eq!(parse_cpu_list(" 1 , 0 ").unwrap(), vec![1, 0]);
        assert_eq!(
            parse_cpu_list("4-2"),
            Err(CpuListError::BadRange("4-2".into()))
        );
        assert_eq!(parse_cpu_list("1,1"), Err(CpuListError::Twice(1)));
        assert_eq!(parse_cpu_list(""), Err(CpuListError::Empty));
        assert_eq!(parse_cpu_list("x"), Err(CpuListError::BadCpu("x".into())));
        assert!(parse_cpu_list("0-4096").is_err());
    }
}
