//! `Sec-WebSocket-Extensions` (RFC 6455 §9.1) and the negotiation of
//! permessage-deflate (RFC 7692 §5, §7.1) in both roles.
//!
//! Pure parsing and decisions, no compression: built without the `deflate`
//! feature too, so that a handshake can read an offer, decline it, and
//! check a server's answer without linking a compressor. The compressor and
//! decompressor that the agreed [`DeflateParams`] configure are in
//! `proto::deflate` (feature `deflate`).
//!
//! ```text
//! client                                           server
//!   DeflateConfig --Offer::from_config--> Offer
//!   offer.header_value()  ---- Sec-WebSocket-Extensions ---->  negotiate_server()
//!                                                               -> Accepted { params, response }
//!   negotiate_client(offer, values) <---- response.header_value() ----
//!   -> DeflateParams (the same as the server's)
//! ```
//!
//! # Example
//!
//! ```
//! use wsmio::proto::extension::{negotiate_client, negotiate_server, DeflateConfig, Offer};
//!
//! // What a browser sends.
//! let request = b"permessage-deflate; client_max_window_bits";
//! let accepted = negotiate_server([&request[..]], &DeflateConfig::default())
//!     .expect("well-formed header")
//!     .expect("an acceptable offer");
//! assert_eq!(
//!     accepted.response.header_value(),
//!     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
//! );
//!
//! // A wsmio client with the same configuration agrees on the same parameters.
//! let offer = Offer::from_config(&DeflateConfig::default());
//! let answer = negotiate_server([offer.header_value().as_bytes()], &DeflateConfig::default())
//!     .unwrap()
//!     .unwrap();
//! let agreed = negotiate_client(&offer, [answer.response.header_value().as_bytes()]).unwrap();
//! assert_eq!(agreed, Some(answer.params));
//! ```

use std::fmt::Write as _;

use super::frame::Role;

mod syntax;
pub use syntax::{parse_extensions, Extension, HeaderError, Param};

/// The extension token of RFC 7692 §7.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// Most extensions read from one request or response (over: a
/// [`HeaderError::TooMany`]). Browsers send one; the head size limit of
/// the handshake bounds the rest.
pub const MAX_EXTENSIONS: usize = 16;

/// Most parameters read for one extension (over: [`HeaderError::TooMany`]).
/// permessage-deflate defines four.
pub const MAX_PARAMS: usize = 16;

/// The window RFC 7692 §7.1.2 assumes when no `*_max_window_bits` is given:
/// 2^15 = 32,768 bytes.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The smallest window a peer may ask for (RFC 7692 §7.1.2.1: 8 to 15).
pub const MIN_WINDOW_BITS: u8 = 8;

/// The smallest window wsmio compresses with and asks a peer for: zlib and
/// its ports cannot set up a raw DEFLATE stream with a 256-byte (8-bit)
/// window (zlib since 1.2.9 refuses `windowBits` -8; before, it silently
/// used 9). A direction agreed at 8 bits is still honoured: zlib's 9-bit
/// window never reaches more than 250 bytes back (see `proto::deflate`).
pub const MIN_COMPRESS_WINDOW_BITS: u8 = 9;

// ------------------------------------------------------ permessage-deflate

/// The four parameters of RFC 7692 §7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeflateParam {
    /// §7.1.1.1 `server_no_context_takeover`.
    ServerNoContextTakeover,
    /// §7.1.1.2 `client_no_context_takeover`.
    ClientNoContextTakeover,
    /// §7.1.2.1 `server_max_window_bits`.
    ServerMaxWindowBits,
    /// §7.1.2.2 `client_max_window_bits`.
    ClientMaxWindowBits,
}

impl DeflateParam {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DeflateParam::ServerNoContextTakeover => "server_no_context_takeover",
            DeflateParam::ClientNoContextTakeover => "client_no_context_takeover",
            DeflateParam::ServerMaxWindowBits => "server_max_window_bits",
            DeflateParam::ClientMaxWindowBits => "client_max_window_bits",
        }
    }

    fn from_name(name: &str) -> Option<DeflateParam> {
        [
            DeflateParam::ServerNoContextTakeover,
            DeflateParam::ClientNoContextTakeover,
            DeflateParam::ServerMaxWindowBits,
            DeflateParam::ClientMaxWindowBits,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }
}

/// Why a permessage-deflate offer is declined (server) or a response fails
/// the connection (client): RFC 7692 §5's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParamError {
    /// §5: "an extension parameter not defined for use in an offer" (or
    /// response).
    Unknown,
    /// §5: "multiple extension parameters with the same name".
    Duplicate(DeflateParam),
    /// §5 "an invalid value": `*_no_context_takeover` has no value
    /// (§7.1.1.1, §7.1.1.2).
    UnexpectedValue(DeflateParam),
    /// §5 "an invalid value": `server_max_window_bits` (and
    /// `client_max_window_bits` in a response) must have one (§7.1.2).
    MissingValue(DeflateParam),
    /// §5 "an invalid value": window bits are a decimal integer from 8 to
    /// 15 without leading zeroes (§7.1.2.1, §7.1.2.2).
    BadWindowBits(DeflateParam),
}

impl ParamError {
    /// A short reason for logs.
    pub fn reason(self) -> &'static str {
        match self {
            ParamError::Unknown => "unknown permessage-deflate parameter",
            ParamError::Duplicate(_) => "repeated permessage-deflate parameter",
            ParamError::UnexpectedValue(_) => "value on a *_no_context_takeover parameter",
            ParamError::MissingValue(_) => "window bits parameter without a value",
            ParamError::BadWindowBits(_) => "window bits not an integer from 8 to 15",
        }
    }
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamError::Unknown => f.write_str(self.reason()),
            ParamError::Duplicate(p)
            | ParamError::UnexpectedValue(p)
            | ParamError::MissingValue(p)
            | ParamError::BadWindowBits(p) => write!(f, "{}: {}", self.reason(), p.as_str()),
        }
    }
}

impl std::error::Error for ParamError {}

/// RFC 7692 §7.1.2: `1*DIGIT`, "a decimal integer value without leading
/// zeroes between 8 to 15, inclusive".
fn window_bits(p: DeflateParam, v: &str) -> Result<u8, ParamError> {
    let ok = !v.starts_with('0') && v.len() <= 2 && v.bytes().all(|b| b.is_ascii_digit());
    match v.parse::<u8>() {
        Ok(n) if ok && (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&n) => Ok(n),
        _ => Err(ParamError::BadWindowBits(p)),
    }
}

/// The permessage-deflate parameters of one element, each at most once.
#[derive(Default)]
struct Raw<'p, 'a> {
    snct: Option<&'p Param<'a>>,
    cnct: Option<&'p Param<'a>>,
    smwb: Option<&'p Param<'a>>,
    cmwb: Option<&'p Param<'a>>,
}

impl<'p, 'a> Raw<'p, 'a> {
    fn collect(params: &'p [Param<'a>]) -> Result<Self, ParamError> {
        let mut raw = Raw::default();
        for p in params {
            // RFC 7692 §5: an unknown parameter declines the offer (server)
            // or fails the connection (client).
            let which = DeflateParam::from_name(p.name).ok_or(ParamError::Unknown)?;
            let slot = match which {
                DeflateParam::ServerNoContextTakeover => &mut raw.snct,
                DeflateParam::ClientNoContextTakeover => &mut raw.cnct,
                DeflateParam::ServerMaxWindowBits => &mut raw.smwb,
                DeflateParam::ClientMaxWindowBits => &mut raw.cmwb,
            };
            // RFC 7692 §5: so does a parameter given twice.
            if slot.replace(p).is_some() {
                return Err(ParamError::Duplicate(which));
            }
        }
        Ok(raw)
    }

    /// RFC 7692 §7.1.1.1, §7.1.1.2: "This extension parameter has no value."
    fn flag(p: Option<&Param<'_>>, which: DeflateParam) -> Result<bool, ParamError> {
        match p {
            None => Ok(false),
            Some(Param { value: None, .. }) => Ok(true),
            Some(_) => Err(ParamError::UnexpectedValue(which)),
        }
    }

    /// A window bits parameter that must have a value when present.
    fn bits(p: Option<&Param<'_>>, which: DeflateParam) -> Result<Option<u8>, ParamError> {
        match p {
            None => Ok(None),
            Some(Param { value: None, .. }) => Err(ParamError::MissingValue(which)),
            Some(Param { value: Some(v), .. }) => window_bits(which, v).map(Some),
        }
    }
}

/// `client_max_window_bits` in an offer (RFC 7692 §7.1.2.2): absent,
/// present without a value, or present with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientWindowBits {
    /// Absent: the server MUST NOT limit the client's window.
    #[default]
    Absent,
    /// Present without a value: the client supports the parameter in the
    /// response.
    Supported,
    /// Present with a value: supported, and the client will not use a
    /// larger window whatever the response says.
    Hint(u8),
}

/// A permessage-deflate offer (client to server), RFC 7692 §7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offer {
    /// §7.1.1.1: the server must not use context takeover.
    pub server_no_context_takeover: bool,
    /// §7.1.1.2: a hint that the client will not use context takeover.
    pub client_no_context_takeover: bool,
    /// §7.1.2.1: the largest window the server may compress with.
    pub server_max_window_bits: Option<u8>,
    /// §7.1.2.2.
    pub client_max_window_bits: ClientWindowBits,
}

impl Offer {
    /// Read an offer's parameters. An error declines this offer (RFC 7692
    /// §5: "A server MUST decline an extension negotiation offer for this
    /// extension if ... an extension parameter not defined for use in an
    /// offer ... an invalid value ... multiple extension parameters with
    /// the same name").
    pub fn parse(params: &[Param<'_>]) -> Result<Offer, ParamError> {
        let raw = Raw::collect(params)?;
        let client_max_window_bits = match raw.cmwb {
            None => ClientWindowBits::Absent,
            // §7.1.2.2: "This parameter has no value or a decimal integer
            // value".
            Some(Param { value: None, .. }) => ClientWindowBits::Supported,
            Some(Param { value: Some(v), .. }) => {
                ClientWindowBits::Hint(window_bits(DeflateParam::ClientMaxWindowBits, v)?)
            }
        };
        Ok(Offer {
            server_no_context_takeover: Raw::flag(raw.snct, DeflateParam::ServerNoContextTakeover)?,
            client_no_context_takeover: Raw::flag(raw.cnct, DeflateParam::ClientNoContextTakeover)?,
            // §7.1.2.1: "This parameter has a decimal integer value".
            server_max_window_bits: Raw::bits(raw.smwb, DeflateParam::ServerMaxWindowBits)?,
            client_max_window_bits,
        })
    }

    /// The offer a client with `config` sends.
    ///
    /// It always includes `client_max_window_bits` (as browsers do), so that
    /// a server may shrink the client's window; with a value when the
    /// client's own window is smaller than 15 bits.
    pub fn from_config(config: &DeflateConfig) -> Offer {
        let (out_bits, in_bits) = config.window_bits();
        Offer {
            // The server's direction is our incoming one.
            server_no_context_takeover: !config.incoming_context_takeover,
            client_no_context_takeover: !config.outgoing_context_takeover,
            server_max_window_bits: (in_bits < MAX_WINDOW_BITS).then_some(in_bits),
            client_max_window_bits: if out_bits < MAX_WINDOW_BITS {
                ClientWindowBits::Hint(out_bits)
            } else {
                ClientWindowBits::Supported
            },
        }
    }

    /// The `Sec-WebSocket-Extensions` value for this offer.
    pub fn header_value(&self) -> String {
        header_value(
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
            match self.client_max_window_bits {
                ClientWindowBits::Absent => None,
                ClientWindowBits::Supported => Some(None),
                ClientWindowBits::Hint(b) => Some(Some(b)),
            },
        )
    }
}

/// A permessage-deflate response (server to client), RFC 7692 §7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Response {
    /// §7.1.1.1: the server will not use context takeover.
    pub server_no_context_takeover: bool,
    /// §7.1.1.2: the client MUST NOT use context takeover.
    pub client_no_context_takeover: bool,
    /// §7.1.2.1: the largest window the server compresses with.
    pub server_max_window_bits: Option<u8>,
    /// §7.1.2.2: the largest window the client may compress with.
    pub client_max_window_bits: Option<u8>,
}

impl Response {
    /// Read a response's parameters. An error fails the connection (RFC
    /// 7692 §5: "A client MUST _Fail the WebSocket Connection_ if the peer
    /// server accepted an extension negotiation offer for this extension
    /// with an extension negotiation response meeting any of the following
    /// conditions": an undefined parameter, an invalid value, a repeated
    /// parameter).
    pub fn parse(params: &[Param<'_>]) -> Result<Response, ParamError> {
        let raw = Raw::collect(params)?;
        Ok(Response {
            server_no_context_takeover: Raw::flag(raw.snct, DeflateParam::ServerNoContextTakeover)?,
            client_no_context_takeover: Raw::flag(raw.cnct, DeflateParam::ClientNoContextTakeover)?,
            server_max_window_bits: Raw::bits(raw.smwb, DeflateParam::ServerMaxWindowBits)?,
            // §7.1.2.2: in a response it "has a decimal integer value".
            client_max_window_bits: Raw::bits(raw.cmwb, DeflateParam::ClientMaxWindowBits)?,
        })
    }

    /// The `Sec-WebSocket-Extensions` value for this response.
    pub fn header_value(&self) -> String {
        header_value(
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
            self.client_max_window_bits.map(Some),
        )
    }
}

/// `permessage-deflate` and its parameters, in the RFC's order;
/// `client_max_window_bits`: absent, without a value, or with one.
fn header_value(snct: bool, cnct: bool, smwb: Option<u8>, cmwb: Option<Option<u8>>) -> String {
    let mut s = String::from(PERMESSAGE_DEFLATE);
    if snct {
        s.push_str("; server_no_context_takeover");
    }
    if cnct {
        s.push_str("; client_no_context_takeover");
    }
    if let Some(b) = smwb {
        let _ = write!(s, "; server_max_window_bits={b}");
    }
    match cmwb {
        None => {}
        Some(None) => s.push_str("; client_max_window_bits"),
        Some(Some(b)) => {
            let _ = write!(s, "; client_max_window_bits={b}");
        }
    }
    s
}

/// What one end wants from permessage-deflate, in its own terms (outgoing:
/// what it compresses; incoming: what it decompresses). The same type
/// configures a server and a client.
///
/// Window bits are clamped to 9..=15 ([`MIN_COMPRESS_WINDOW_BITS`]): wsmio
/// never asks a peer for 8, since zlib-based peers cannot compress with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Keep our compression context from one message to the next when the
    /// peer allows it: better ratio on small similar messages, but the
    /// compressor's memory (about 137–380 KiB, see BENCHMARKS.md) stays
    /// with the connection while it is idle. `false` (the default) asks
    /// for no context takeover on our side (`server_no_context_takeover`
    /// as a server), which also lets a server share one compressed frame
    /// among many receivers.
    pub outgoing_context_takeover: bool,
    /// Let the peer keep its compression context between messages. `false`
    /// (the default) asks it not to (`client_no_context_takeover` as a
    /// server), so our decompressor (about 47 KiB) is freed between
    /// messages.
    pub incoming_context_takeover: bool,
    /// The largest window we compress with (9..=15, default 15).
    pub outgoing_max_window_bits: u8,
    /// The largest window we ask the peer to compress with (9..=15,
    /// default 15). Honoured by a client only if it offered
    /// `client_max_window_bits` (RFC 7692 §7.1.2.2).
    pub incoming_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            outgoing_context_takeover: false,
            incoming_context_takeover: false,
            outgoing_max_window_bits: MAX_WINDOW_BITS,
            incoming_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

impl DeflateConfig {
    /// (outgoing, incoming) window bits, clamped to 9..=15.
    fn window_bits(&self) -> (u8, u8) {
        let clamp = |b: u8| b.clamp(MIN_COMPRESS_WINDOW_BITS, MAX_WINDOW_BITS);
        (
            clamp(self.outgoing_max_window_bits),
            clamp(self.incoming_max_window_bits),
        )
    }
}

/// One direction's agreed parameters (what its compressor may do, so what
/// its decompressor must be ready for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direction {
    /// The compressor resets after every message (RFC 7692 §7.1.1).
    pub no_context_takeover: bool,
    /// The compressor's window is at most 2^bits bytes (8..=15, §7.1.2).
    pub max_window_bits: u8,
}

/// The agreed parameters of a connection (RFC 7692 §7.1): both ends derive
/// the same value, the server from the offer it accepted, the client from
/// the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// §7.1.1.1.
    pub server_no_context_takeover: bool,
    /// §7.1.1.2.
    pub client_no_context_takeover: bool,
    /// §7.1.2.1 (15 when not given).
    pub server_max_window_bits: u8,
    /// §7.1.2.2 (15 when not given).
    pub client_max_window_bits: u8,
}

impl DeflateParams {
    /// What the end in `role` compresses with.
    pub fn outgoing(&self, role: Role) -> Direction {
        match role {
            Role::Server => self.server_direction(),
            Role::Client => self.client_direction(),
        }
    }

    /// What the end in `role` decompresses.
    pub fn incoming(&self, role: Role) -> Direction {
        match role {
            Role::Server => self.client_direction(),
            Role::Client => self.server_direction(),
        }
    }

    fn server_direction(&self) -> Direction {
        Direction {
            no_context_takeover: self.server_no_context_takeover,
            max_window_bits: self.server_max_window_bits,
        }
    }

    fn client_direction(&self) -> Direction {
        Direction {
            no_context_takeover: self.client_no_context_takeover,
            max_window_bits: self.client_max_window_bits,
        }
    }
}

/// An offer the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// What both ends now use.
    pub params: DeflateParams,
    /// What to send back (`response.header_value()`).
    pub response: Response,
    /// Which element of the offered list was accepted (0-based, counting
    /// every extension in the header, not only permessage-deflate).
    pub index: usize,
}

/// Server role: accept `offer` with `config` (RFC 7692 §7.1). Every valid
/// offer can be accepted; the answer follows the offer where the RFC says
/// the server must, and `config` where it may choose.
pub fn accept_offer(offer: &Offer, config: &DeflateConfig) -> (DeflateParams, Response) {
    let (out_bits, in_bits) = config.window_bits();
    // §7.1.1.1: the server accepts `server_no_context_takeover` by echoing
    // it, and "MAY include [it] ... even if the extension negotiation offer
    // ... didn't include" it.
    let snct = offer.server_no_context_takeover || !config.outgoing_context_takeover;
    // §7.1.1.2: the server MAY include `client_no_context_takeover`; when
    // the client hinted it, echoing it lets us drop our window between
    // messages at no cost to the client.
    let cnct = offer.client_no_context_takeover || !config.incoming_context_takeover;
    // §7.1.2.1: answer an offered `server_max_window_bits` with "the same or
    // smaller value"; without one we MAY still announce a smaller window.
    // An offered 8 is accepted as 8 rather than declined (Autobahn 13.3 and
    // 13.5 offer it): zlib's 9-bit window reaches at most 250 bytes back
    // (proto::deflate), within the 256 agreed.
    let server_bits = offer
        .server_max_window_bits
        .map_or(out_bits, |n| n.min(out_bits));
    let server_param = (offer.server_max_window_bits.is_some() || server_bits < MAX_WINDOW_BITS)
        .then_some(server_bits);
    // §7.1.2.2: `client_max_window_bits` only if offered ("MUST NOT include"
    // otherwise), with a value no larger than the client's hint.
    let (client_bits, client_param) = match offer.client_max_window_bits {
        ClientWindowBits::Absent => (MAX_WINDOW_BITS, None),
        ClientWindowBits::Supported => (in_bits, (in_bits < MAX_WINDOW_BITS).then_some(in_bits)),
        ClientWindowBits::Hint(h) => {
            let b = h.min(in_bits);
            (b, (b < MAX_WINDOW_BITS).then_some(b))
        }
    };
    (
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        },
        Response {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: server_param,
            client_max_window_bits: client_param,
        },
    )
}

/// Server role: pick the first acceptable permessage-deflate offer among
/// `extensions` (in the client's order of preference, RFC 6455 §9.1), or
/// `None` to decline the extension (answer without it).
///
/// An offer with an unknown, repeated or invalid parameter is declined and
/// the next one tried (RFC 7692 §5). Other extensions are ignored.
pub fn select_offer(extensions: &[Extension<'_>], config: &DeflateConfig) -> Option<Accepted> {
    extensions
        .iter()
        .enumerate()
        .filter(|(_, e)| e.name == PERMESSAGE_DEFLATE)
        .find_map(|(index, e)| {
            let offer = Offer::parse(&e.params).ok()?;
            let (params, response) = accept_offer(&offer, config);
            Some(Accepted {
                params,
                response,
                index,
            })
        })
}

/// Server role: the whole step, from the request's
/// `Sec-WebSocket-Extensions` values (all of them, in order) to the
/// accepted offer, if any.
///
/// A header that does not parse is an error: RFC 6455 §4.2.1 lets the
/// server refuse a request that does not follow the handshake's grammar
/// (`400`); a server may instead treat it as no offer.
pub fn negotiate_server<'a, I>(
    values: I,
    config: &DeflateConfig,
) -> Result<Option<Accepted>, HeaderError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let extensions = parse_extensions(values)?;
    Ok(select_offer(&extensions, config))
}

/// Why a client fails the connection on the server's extension response.
///
/// This happens during the opening handshake, before the connection is
/// open: there is no close frame to send; the client closes the TCP
/// connection (RFC 6455 §4.1: "_Fail the WebSocket Connection_") and
/// reports the reason locally (as a `1006`-like abnormal closure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The header does not follow RFC 6455 §9.1.
    Header(HeaderError),
    /// RFC 6455 §4.1 (5): an extension that was not offered.
    NotOffered,
    /// permessage-deflate answered twice: the server accepts one offer.
    Repeated,
    /// RFC 7692 §5: an undefined, repeated or invalid parameter.
    Param(ParamError),
    /// RFC 7692 §7.1.1.1: we offered `server_no_context_takeover` and the
    /// server did not accept it (§5: "The client does not support the
    /// configuration that the response represents").
    ContextTakeoverRefused,
    /// RFC 7692 §7.1.2.1: `server_max_window_bits` missing or larger than
    /// offered.
    ServerWindowTooLarge,
    /// RFC 7692 §7.1.2.2: `client_max_window_bits` in a response to an
    /// offer without it.
    ClientWindowNotOffered,
}

impl NegotiationError {
    /// A short reason for logs and the client's error.
    pub fn reason(self) -> &'static str {
        match self {
            NegotiationError::Header(e) => e.reason(),
            NegotiationError::NotOffered => "server selected an extension not offered",
            NegotiationError::Repeated => "server accepted permessage-deflate twice",
            NegotiationError::Param(e) => e.reason(),
            NegotiationError::ContextTakeoverRefused => {
                "server did not accept server_no_context_takeover"
            }
            NegotiationError::ServerWindowTooLarge => {
                "server_max_window_bits missing or larger than offered"
            }
            NegotiationError::ClientWindowNotOffered => {
                "client_max_window_bits in answer to an offer without it"
            }
        }
    }
}

impl std::fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NegotiationError::Param(e) => write!(f, "{e}"),
            _ => f.write_str(self.reason()),
        }
    }
}

impl std::error::Error for NegotiationError {}

/// Client role: check the server's `response` to our `offer` and derive the
/// agreed parameters.
pub fn validate_response(
    offer: &Offer,
    response: &Response,
) -> Result<DeflateParams, NegotiationError> {
    // §7.1.1.1: the server accepts `server_no_context_takeover` by
    // including it; without it the response is not for our offer.
    if offer.server_no_context_takeover && !response.server_no_context_takeover {
        return Err(NegotiationError::ContextTakeoverRefused);
    }
    // §7.1.2.1: an offered `server_max_window_bits` is accepted "with the
    // same or smaller value"; without an offered one, any valid value.
    let server_bits = match (
        offer.server_max_window_bits,
        response.server_max_window_bits,
    ) {
        (Some(o), Some(r)) if r <= o => r,
        (Some(_), _) => return Err(NegotiationError::ServerWindowTooLarge),
        (None, r) => r.unwrap_or(MAX_WINDOW_BITS),
    };
    // §7.1.2.2: no `client_max_window_bits` unless offered. A value above
    // our hint is harmless (we keep to the hint, as we promised).
    let client_bits = match (
        offer.client_max_window_bits,
        response.client_max_window_bits,
    ) {
        (ClientWindowBits::Absent, Some(_)) => {
            return Err(NegotiationError::ClientWindowNotOffered)
        }
        (ClientWindowBits::Absent | ClientWindowBits::Supported, None) => MAX_WINDOW_BITS,
        (ClientWindowBits::Supported, Some(r)) => r,
        (ClientWindowBits::Hint(h), r) => r.map_or(h, |r| r.min(h)),
    };
    Ok(DeflateParams {
        server_no_context_takeover: response.server_no_context_takeover,
        // §7.1.1.2: binding when the server says so; our own hint binds us.
        client_no_context_takeover: response.client_no_context_takeover
            || offer.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    })
}

/// Client role: the whole step, from the response's
/// `Sec-WebSocket-Extensions` values to the agreed parameters (`None`: the
/// server declined, and messages go uncompressed).
///
/// We offer permessage-deflate only, so any other extension fails the
/// connection (RFC 6455 §4.1 (5)), as does anything RFC 7692 §5 lists.
pub fn negotiate_client<'a, I>(
    offer: &Offer,
    values: I,
) -> Result<Option<DeflateParams>, NegotiationError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let extensions = parse_extensions(values).map_err(NegotiationError::Header)?;
    let mut agreed = None;
    for e in &extensions {
        if e.name != PERMESSAGE_DEFLATE {
            return Err(NegotiationError::NotOffered);
        }
        if agreed.is_some() {
            return Err(NegotiationError::Repeated);
        }
        let response = Response::parse(&e.params).map_err(NegotiationError::Param)?;
        agreed = Some(validate_response(offer, &response)?);
    }
    Ok(agreed)
}

#[cfg(test)]
mod tests;
