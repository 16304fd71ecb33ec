//! Explicit limits for the read side of a connection.

/// Default maximum payload of one frame: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: u64 = 16 << 20;
/// Default maximum size of one reassembled message: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 16 << 20;
/// How received data is handed to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryMode {
    /// Whole messages: fragments are reassembled (up to
    /// [`Limits::max_message_size`]) and delivered once, as `&str` for text.
    #[default]
    Messages,
    /// Payload chunks as they arrive, without reassembly: for embedders that
    /// stream large payloads. Text chunks are still validated as UTF-8
    /// incrementally, and the message size limit still applies.
    Chunks,
}

/// The old name of [`DeliveryMode`] (renamed so that it is not confused
/// with the hub's `pubsub::protocol::Delivery`).
#[deprecated(since = "0.2.0", note = "renamed `DeliveryMode`")]
pub type Delivery = DeliveryMode;

/// Read-side limits of one connection. Violations close with 1009.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted frame payload, checked from the header before any
    /// payload byte is read or buffered.
    pub max_frame_size: u64,
    /// Largest accepted message (sum of its frames), checked with
    /// overflow-safe arithmetic at each frame header.
    pub max_message_size: u64,
    /// Whole messages or streamed chunks.
    pub delivery: DeliveryMode,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            delivery: DeliveryMode::Messages,
        }
    }
}
