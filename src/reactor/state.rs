//! The application's state per connection ([`Handler::Conn`]): one slot
//! per slab key, made with `Default` when a connection is accepted and
//! dropped after its last callback. The slots are typed (`Slots<S>`) but
//! held behind `dyn ConnStates`, so the loop's code stays non-generic;
//! only [`Ctx::conn`](super::Ctx::conn) names the type, and pays a type
//! check per call. A handler with `type Conn = ()` stores nothing.
//!
//! [`Handler::Conn`]: super::Handler::Conn

use std::any::Any;

use super::id::ConnId;

/// What the loop does with the slots without knowing their type.
pub(crate) trait ConnStates: Any {
    /// A connection was accepted in slab slot `key` with generation `gen`:
    /// its state starts as `Default::default()`.
    fn create(&mut self, key: usize, gen: u32);
    /// The connection in `key` with generation `gen` is gone: drop its
    /// state, unless a newer connection already took the slot (a handler
    /// may connect again from the last callback of the old one).
    fn remove(&mut self, key: usize, gen: u32);
    /// For the typed access.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The typed slots: `(generation, state)` per slab key, so that a stale
/// id never reaches the state of the connection that reused its slot.
pub(crate) struct Slots<S>(Vec<Option<(u32, S)>>);

impl<S> Default for Slots<S> {
    fn default() -> Self {
        Slots(Vec::new())
    }
}

impl<S: Default + Send + 'static> ConnStates for Slots<S> {
    fn create(&mut self, key: usize, gen: u32) {
        if key >= self.0.len() {
            self.0.resize_with(key + 1, || None);
        }
        self.0[key] = Some((gen, S::default()));
    }

    fn remove(&mut self, key: usize, gen: u32) {
        if let Some(slot) = self.0.get_mut(key) {
            if matches!(slot, Some((g, _)) if *g == gen) {
                *slot = None;
            }
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The state of `id`, if `states` holds `S`s and `id` is alive in them.
pub(crate) fn get<S: 'static>(states: &mut dyn ConnStates, id: ConnId) -> Option<&mut S> {
    let slots = states.as_any_mut().downcast_mut::<Slots<S>>()?;
    match slots.0.get_mut(id.key as usize)? {
        Some((gen, s)) if *gen == id.gen => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_belongs_to_one_generation() {
        let mut states: Box<dyn ConnStates + Send> = Box::new(Slots::<String>::default());
        let (a, b) = (ConnId { key: 3, gen: 1 }, ConnId { key: 3, gen: 2 });
        states.create(3, 1);
        get::<String>(&mut *states, a).unwrap().push_str("alice");
        assert_eq!(get::<String>(&mut *states, a).unwrap(), "alice");
        // Another type, or a stale id, reaches nothing.
        assert!(get::<u32>(&mut *states, a).is_none());
        assert!(get::<String>(&mut *states, b).is_none());
        // Removing another generation leaves it alone.
        states.remove(3, 2);
        assert_eq!(get::<String>(&mut *states, a).unwrap(), "alice");
        states.remove(3, 1);
        assert!(get::<String>(&mut *states, a).is_none());
        // The slot reused by the next connection starts from Default.
        states.create(3, 2);
        assert_eq!(get::<String>(&mut *states, b).unwrap(), "");
    }
}
