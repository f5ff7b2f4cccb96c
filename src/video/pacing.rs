//! When each frame is encoded: at its own timestamp, or resampled to a constant rate by
//! duplicating and dropping frames. A frame is held until the next one arrives, so its
//! duration is known when it is encoded.

use crate::stream::Rational;

/// What to do with the held frame.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Emit {
    /// Encode it once at `pts` (ticks of the input's time base, from 0) lasting `duration`.
    Stamped { pts: i64, duration: i64 },
    /// Encode it in each of these slots of the constant rate (none: it is dropped).
    Slots(std::ops::Range<u64>),
}

pub(crate) struct Pacer {
    /// Seconds a tick of the input's timestamps.
    tick: Rational,
    /// Ticks the last frame lasts (one frame at the nominal rate).
    last_duration: i64,
    /// The constant output rate, when resampling.
    rate: Option<Rational>,
    first: Option<i64>,
    held: Option<i64>,
    next_slot: u64,
}

impl Pacer {
    /// Input timestamps in ticks of `time_base`, frames nominally at `nominal` a second;
    /// `resample_to` a constant rate, or keep the timestamps.
    pub fn new(time_base: Rational, nominal: Rational, resample_to: Option<Rational>) -> Self {
        let last_duration = nominal.frame_ticks(time_base);
        Self { tick: time_base, last_duration, rate: resample_to, first: None, held: None, next_slot: 0 }
    }

    /// A frame timed `pts` arrives; the frame held before it, if any, is due.
    pub fn push(&mut self, pts: i64) -> Option<Emit> {
        let first = *self.first.get_or_insert(pts);
        let pts = pts.saturating_sub(first);
        let held = self.held.replace(pts)?;
        Some(self.emit(held, pts))
    }

    /// No more frames: what to do with the last one.
    pub fn finish(&mut self) -> Option<Emit> {
        let held = self.held.take()?;
        Some(self.emit(held, held.saturating_add(self.last_duration)))
    }

    /// Seconds of output emitted so far.
    pub fn emitted_seconds(&self, last: &Emit) -> f64 {
        match (last, self.rate) {
            (Emit::Stamped { pts, duration }, _) => pts.saturating_add(*duration) as f64 * self.tick.as_f64(),
            (Emit::Slots(_), Some(rate)) => self.next_slot as f64 / rate.as_f64(),
            (Emit::Slots(_), None) => 0.0,
        }
    }

    /// The held frame at `start`, shown until `end` (ticks from the first frame).
    fn emit(&mut self, start: i64, end: i64) -> Emit {
        let Some(rate) = self.rate else {
            return Emit::Stamped { pts: start, duration: end.saturating_sub(start).max(1) };
        };
        // Slot n shows the frame on screen at its middle, (n + ½) / rate. Slots before `end`:
        // (2n + 1)·den_r·den_t < 2·num_r·num_t·end, so n < ⌈2·num_r·num_t·end / (den_r·den_t)⌉ / 2,
        // exactly (a broken timestamp saturates; the encoder refuses absurd repeats).
        let (r, t) = (rate, self.tick);
        let numerator = (2 * i128::from(r.num) * i128::from(t.num)).saturating_mul(i128::from(end));
        let denominator = i128::from(r.den) * i128::from(t.den);
        let ceiling = if numerator <= 0 { 0 } else { (numerator - 1) / denominator + 1 };
        let from = self.next_slot;
        self.next_slot = self.next_slot.max(u64::try_from(ceiling / 2).unwrap_or(u64::MAX));
        Emit::Slots(from..self.next_slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(num: u32, den: u32) -> Rational {
        Rational::new(num, den).unwrap()
    }

    fn run(pacer: &mut Pacer, pts: &[i64]) -> Vec<Emit> {
        let mut out: Vec<Emit> = pts.iter().filter_map(|&p| pacer.push(p)).collect();
        out.extend(pacer.finish());
        out
    }

    #[test]
    fn stamped_frames_keep_their_times_from_zero_and_the_last_lasts_a_nominal_frame() {
        let mut pacer = Pacer::new(r(1, 90_000), r(30, 1), None);
        let out = run(&mut pacer, &[9000, 12_000, 21_000, 22_500]);
        let want = [(0, 3000), (3000, 9000), (12_000, 1500), (13_500, 3000)];
        let want: Vec<Emit> = want.iter().map(|&(pts, duration)| Emit::Stamped { pts, duration }).collect();
        assert_eq!(out, want);
        let seconds = pacer.emitted_seconds(out.last().unwrap());
        assert!((seconds - 16_500.0 / 90_000.0).abs() < 1e-12, "{seconds}");
    }

    #[test]
    fn resampling_an_even_stream_to_its_own_rate_keeps_every_frame_once() {
        let mut pacer = Pacer::new(r(1, 12_800), r(25, 1), Some(r(25, 1)));
        let pts: Vec<i64> = (0..50).map(|i| i * 512).collect();
        let out = run(&mut pacer, &pts);
        let want: Vec<Emit> = (0..50).map(|i| Emit::Slots(i..i + 1)).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn resampling_duplicates_long_frames_and_drops_short_ones() {
        // Frames at 0, 0.1, 0.12, 0.5 s (the last lasting 0.1 s) onto 10 frames a second.
        let mut pacer = Pacer::new(r(1, 1000), r(10, 1), Some(r(10, 1)));
        let out = run(&mut pacer, &[0, 100, 120, 500]);
        let want = [0..1, 1..1, 1..5, 5..6];
        assert_eq!(out, want.into_iter().map(Emit::Slots).collect::<Vec<_>>());
        // Halving the rate keeps every other frame; doubling it shows each twice.
        let mut pacer = Pacer::new(r(1, 30), r(30, 1), Some(r(15, 1)));
        let kept: u64 = run(&mut pacer, &(0..30).collect::<Vec<_>>())
            .iter()
            .map(|e| match e {
                Emit::Slots(s) => s.end - s.start,
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(kept, 15);
        let mut pacer = Pacer::new(r(1, 30), r(30, 1), Some(r(60, 1)));
        assert!(run(&mut pacer, &(0..30).collect::<Vec<_>>()).iter().all(|e| matches!(e, Emit::Slots(s) if s.end - s.start == 2)));
    }

    #[test]
    fn a_broken_timestamp_saturates_instead_of_overflowing() {
        let mut pacer = Pacer::new(r(1, 90_000), r(30, 1), Some(r(30, 1)));
        assert_eq!(pacer.push(i64::MIN), None);
        let Some(Emit::Slots(slots)) = pacer.push(i64::MAX) else { panic!("slots") };
        assert!(slots.end - slots.start > 1 << 40);
        let mut pacer = Pacer::new(r(1, 90_000), r(30, 1), None);
        pacer.push(i64::MIN);
        assert!(matches!(pacer.push(i64::MAX), Some(Emit::Stamped { pts: 0, duration }) if duration > 0));
    }
}
