//! One write per request: a transport layer for the shipper's HTTP agent.
//! ureq transmits a request's head and its body separately, and with
//! TCP_NODELAY each is its own `sendto` and its own segment — two trips
//! through the kernel's TCP path (and, on a TLS connection, two records)
//! where one would do. This layer sits last in ureq's connector chain (after
//! TCP, proxy and TLS): it keeps what ureq hands it to transmit in its own
//! output buffer and passes it on when ureq next waits for input (the
//! response, a TLS handshake's reply, a 100-continue), or sooner when the
//! buffer is nearly full. The reply is moved from the layer below into this
//! layer's input buffer as it comes.
//!
//! ureq asks a kept connection whether it is still open twice per request:
//! when it takes it from its pool, and when it gives it back right after
//! the reply. Each asking is three system calls on a TCP socket (a
//! non-blocking peek between two `ioctl`s). The first matters — a server
//! that closed an idle connection is found there; the second, a moment
//! after a whole reply was read, finds what the next request's first
//! asking finds anyway, so this layer answers it from what it knows: open,
//! unless bytes are left unread. (ureq's transport API is in its
//! `unversioned` module: Cargo.toml pins ureq's minor version.)

use ureq::Error;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

/// Free output space below which what is held is passed on at once, so
/// that ureq is never handed a buffer too small for its next piece.
const MIN_ROOM: usize = 4 * 1024;

/// The connector: wraps whatever transport the chain before it opened.
#[derive(Debug, Default)]
pub struct Coalescing;

impl<In: Transport> Connector<In> for Coalescing {
    type Out = Coalesced<In>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        let cfg = details.config;
        Ok(chained
            .map(|inner| Coalesced::new(inner, cfg.input_buffer_size(), cfg.output_buffer_size())))
    }
}

/// A transport whose writes wait for its next read.
#[derive(Debug)]
pub struct Coalesced<T> {
    inner: T,
    buffers: LazyBuffers,
    /// Bytes at the start of the output buffer not yet passed on.
    held: usize,
    /// A reply came in since ureq last asked whether the connection is
    /// open: the next asking is the one of giving it back.
    replied: bool,
}

impl<T: Transport> Coalesced<T> {
    fn new(inner: T, input_size: usize, output_size: usize) -> Self {
        Coalesced {
            inner,
            buffers: LazyBuffers::new(input_size, output_size),
            held: 0,
            replied: false,
        }
    }

    /// Passes what is held to the layer below, in pieces its own output
    /// buffer takes.
    fn flush(&mut self, timeout: NextTimeout) -> Result<(), Error> {
        let mut sent = 0;
        while sent < self.held {
            let out = self.inner.buffers().output();
            let n = out.len().min(self.held - sent);
            if n == 0 {
                return Err(Error::Io(std::io::Error::other(
                    "the transport below offers no output buffer",
                )));
            }
            out[..n].copy_from_slice(&self.buffers.output()[sent..sent + n]);
            self.inner.transmit_output(n, timeout)?;
            sent += n;
        }
        self.held = 0;
        Ok(())
    }

    /// Moves what the layer below has received into this layer's input
    /// buffer, as much as fits; the number of bytes moved.
    fn take_input(&mut self) -> usize {
        let from = self.inner.buffers().input();
        let to = self.buffers.input_append_buf();
        let n = from.len().min(to.len());
        to[..n].copy_from_slice(&from[..n]);
        self.inner.buffers().input_consume(n);
        self.buffers.input_appended(n);
        n
    }
}

impl<T: Transport> Transport for Coalesced<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.held += amount;
        // ureq wrote into `output()`: the buffer is allocated, at its size.
        if self.buffers.output().len().saturating_sub(self.held) < MIN_ROOM {
            self.flush(timeout)?;
        }
        Ok(())
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.flush(timeout)?;
        if self.buffers.can_use_input() {
            return Ok(true);
        }
        self.await_input(timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.flush(timeout)?;
        if self.inner.buffers().input().is_empty() && !self.inner.await_input(timeout)? {
            return Ok(false);
        }
        self.replied = true;
        Ok(self.take_input() > 0)
    }

    fn is_open(&mut self) -> bool {
        // Bytes left unread are bytes the server sent unasked: not reusable.
        if self.held > 0
            || !self.buffers.input().is_empty()
            || !self.inner.buffers().input().is_empty()
        {
            return false;
        }
        // Given back right after a reply: the next request's asking probes.
        std::mem::take(&mut self.replied) || self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// ureq writes into the part of the output buffer after what is held.
impl<T: Transport> Buffers for Coalesced<T> {
    fn output(&mut self) -> &mut [u8] {
        let held = self.held;
        &mut self.buffers.output()[held..]
    }

    fn input(&self) -> &[u8] {
        self.buffers.input()
    }

    fn input_append_buf(&mut self) -> &mut [u8] {
        self.buffers.input_append_buf()
    }

    fn input_appended(&mut self, amount: usize) {
        self.buffers.input_appended(amount);
    }

    fn input_consume(&mut self, amount: usize) {
        self.buffers.input_consume(amount);
    }

    fn tmp_and_output(&mut self) -> (&mut [u8], &mut [u8]) {
        let held = self.held;
        let (tmp, out) = self.buffers.tmp_and_output();
        (tmp, &mut out[held..])
    }

    fn can_use_input(&self) -> bool {
        self.buffers.can_use_input()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layer below: records each transmission, answers with `reply`.
    #[derive(Debug)]
    struct Wire {
        buffers: LazyBuffers,
        sent: Vec<Vec<u8>>,
        reply: Vec<u8>,
        probes: u32,
    }

    impl Transport for Wire {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }
        fn transmit_output(&mut self, amount: usize, _: NextTimeout) -> Result<(), Error> {
            self.sent.push(self.buffers.output()[..amount].to_vec());
            Ok(())
        }
        fn await_input(&mut self, _: NextTimeout) -> Result<bool, Error> {
            let to = self.buffers.input_append_buf();
            let n = self.reply.len().min(to.len());
            to[..n].copy_from_slice(&self.reply[..n]);
            self.reply.drain(..n);
            self.buffers.input_appended(n);
            Ok(n > 0)
        }
        fn is_open(&mut self) -> bool {
            self.probes += 1;
            true
        }
    }

    fn layer(size: usize, reply: &[u8]) -> Coalesced<Wire> {
        let wire = Wire {
            buffers: LazyBuffers::new(size, size),
            sent: Vec::new(),
            reply: reply.to_vec(),
            probes: 0,
        };
        Coalesced::new(wire, size, size)
    }

    /// What ureq does: write into `output()` from 0, then transmit.
    fn write(t: &mut Coalesced<Wire>, bytes: &[u8]) {
        let out = t.buffers().output();
        out[..bytes.len()].copy_from_slice(bytes);
        t.transmit_output(bytes.len(), NextTimeout::default())
            .unwrap_or_else(|e| panic!("transmit: {e}"));
    }

    #[test]
    fn head_and_body_leave_in_one_write_when_the_reply_is_awaited() {
        let mut t = layer(16 * 1024, b"HTTP/1.1 204 No Content\r\n\r\n");
        write(&mut t, b"POST / HTTP/1.1\r\n\r\n");
        write(&mut t, b"{\"body\":1}");
        assert!(t.inner.sent.is_empty(), "nothing leaves before the read");
        let got = t.maybe_await_input(NextTimeout::default());
        assert!(matches!(got, Ok(true)), "{got:?}");
        assert_eq!(
            t.inner.sent,
            [b"POST / HTTP/1.1\r\n\r\n{\"body\":1}".to_vec()]
        );
        assert_eq!(t.buffers().input(), b"HTTP/1.1 204 No Content\r\n\r\n");
        assert!(
            t.inner.buffers().input().is_empty(),
            "the reply was moved up"
        );
        let n = t.buffers().input().len();
        t.buffers().input_consume(n);
        assert!(t.is_open(), "given back after the reply");
        assert_eq!(t.inner.probes, 0, "without asking the socket");
        assert!(t.is_open(), "taken from the pool");
        assert_eq!(t.inner.probes, 1, "the socket is asked");
    }

    #[test]
    fn unread_bytes_make_the_connection_unusable() {
        let mut t = layer(1024, b"HTTP/1.1 204 No Content\r\n\r\nextra");
        assert!(matches!(t.await_input(NextTimeout::default()), Ok(true)));
        assert!(!t.is_open(), "unconsumed reply bytes");
        // Bytes left in the layer below (this layer's buffer was full).
        let mut u = layer(8, b"");
        let below = u.inner.buffers().input_append_buf();
        below[..3].copy_from_slice(b"abc");
        u.inner.buffers().input_appended(3);
        assert!(!u.is_open(), "bytes still below this layer");
    }

    #[test]
    fn a_nearly_full_buffer_is_passed_on_at_once_and_nothing_is_lost() {
        let size = 8 * 1024;
        let mut t = layer(size, b"");
        let body: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        for piece in body.chunks(size - MIN_ROOM + 1) {
            let room = t.buffers().output().len();
            assert!(room >= MIN_ROOM, "ureq is always given room: {room}");
            write(&mut t, piece);
        }
        assert!(matches!(t.await_input(NextTimeout::default()), Ok(false)));
        let wire: Vec<u8> = t.inner.sent.concat();
        assert_eq!(wire, body);
        assert!(t.inner.sent.iter().all(|s| s.len() <= size));
    }

    #[test]
    fn a_reply_larger_than_a_read_arrives_whole() {
        let reply: Vec<u8> = (0..3_000u32).map(|i| (i % 7) as u8 + b'a').collect();
        let mut t = layer(1024, &reply);
        let mut got = Vec::new();
        for _ in 0..10 {
            if got.len() == reply.len() {
                break;
            }
            assert!(matches!(t.await_input(NextTimeout::default()), Ok(true)));
            let input = t.buffers().input().to_vec();
            t.buffers().input_consume(input.len());
            got.extend(input);
        }
        assert_eq!(got, reply);
    }
}
