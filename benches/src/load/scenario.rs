//! What a load run does.

/// One scenario. Rates are totals across all publishers.
#[derive(Debug, Clone, clap::Args)]
pub struct Scenario {
    /// Publisher connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Consumers per queue (each on its own connection), manual ack.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Message body size in bytes (at least 8: a timestamp travels in the body).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Publish with delivery_mode 2 to durable queues.
    #[arg(long)]
    pub persistent: bool,
    /// Publisher confirms: unconfirmed publishes allowed per publisher (0: no confirms).
    #[arg(long, default_value_t = 0)]
    pub confirm_window: usize,
    /// Consumer prefetch.
    #[arg(long, default_value_t = 10)]
    pub prefetch: u16,
    /// Total publish rate in messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Queues bound to the topic exchange with a matching pattern; every message reaches all.
    #[arg(long, default_value_t = 1)]
    pub fanout: usize,
    /// Extra bindings whose patterns match nothing the run publishes.
    #[arg(long, default_value_t = 0)]
    pub idle_bindings: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Leave the queues and their messages in place afterwards (to measure recovery).
    #[arg(long)]
    pub keep: bool,
}

impl Scenario {
    pub fn describe(&self) -> String {
        format!(
            "{} pub, {} cons/queue, {} B, {}, {}, prefetch {}, {}, fan-out {}{}",
            self.publishers,
            self.consumers,
            self.size,
            if self.persistent {
                "persistent"
            } else {
                "transient"
            },
            match self.confirm_window {
                0 => "no confirms".to_string(),
                w => format!("confirms (window {w})"),
            },
            self.prefetch,
            match self.rate {
                0 => "max rate".to_string(),
                r => format!("{r} msg/s"),
            },
            self.fanout,
            match self.idle_bindings {
                0 => String::new(),
                n => format!(", {n} idle bindings"),
            }
        )
    }
}
