//! edge-core's QUIC congestion controller ([`edge_core::h3::congestion`]) as quinn-proto's
//! `Controller`, for `--http3-congestion bbr`.
//!
//! Owns: passing quinn's congestion events to the controller and its window back. Must not:
//! decide anything itself (the model is edge-core's, with its scenario tests).

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use edge_core::h3::congestion::Congestion;
use quinn_proto::congestion::{Controller, ControllerFactory};
use quinn_proto::RttEstimator;

/// Builds a [`Paced`] controller per connection with a first window of `initial_window`
/// bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacedConfig {
    pub(crate) initial_window: u64,
}

impl ControllerFactory for PacedConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Paced(Congestion::new(
            now,
            current_mtu,
            self.initial_window,
        )))
    }
}

/// One connection's controller.
#[derive(Debug, Clone)]
pub(crate) struct Paced(Congestion);

impl Controller for Paced {
    fn on_sent(&mut self, now: Instant, _bytes: u64, last_packet_number: u64) {
        self.0.handle_sent(now, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        _rtt: &RttEstimator,
    ) {
        self.0.handle_ack(now, sent, bytes, app_limited);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        _app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.0
            .handle_end_acks(now, in_flight, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        _now: Instant,
        _sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.0.handle_loss(lost_bytes, is_persistent_congestion);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.0.handle_mtu(new_mtu);
    }

    fn window(&self) -> u64 {
        self.0.window()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.0.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}
