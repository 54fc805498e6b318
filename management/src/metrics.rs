//! `GET /metrics`: Prometheus text, without credentials, aggregated as rabbitmq_prometheus
//! serves it by default (one sample per family, no per-queue labels), with its metric names,
//! so existing RabbitMQ dashboards and alerts work. `GET /metrics/per-object` gives the queue
//! families per queue (labels `vhost`, `queue`), as RabbitMQ's endpoint of that name.

use crate::{system, App};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use bloodbank_broker::QueueView;
use std::fmt::Write;
use std::sync::Arc;

/// Prometheus text format 0.0.4.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# TYPE {name} {kind}\n# HELP {name} {help}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        match labels.is_empty() {
            true => {
                let _ = writeln!(self.0, "{name} {value}");
            }
            false => {
                let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
            }
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, "", value);
    }

    fn counter(&mut self, name: &str, labels: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, labels, value);
    }
}

/// Queue families as one sum (`/metrics`, RabbitMQ's default) or one sample per queue with
/// `vhost` and `queue` labels (`/metrics/per-object`).
#[derive(Clone, Copy)]
enum Scope {
    Aggregated,
    PerObject,
}

pub async fn aggregated(State(app): State<Arc<App>>) -> impl IntoResponse {
    render(&app, Scope::Aggregated)
}

pub async fn per_object(State(app): State<Arc<App>>) -> impl IntoResponse {
    render(&app, Scope::PerObject)
}

/// A label value as the text format wants it.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render(app: &App, scope: Scope) -> impl IntoResponse {
    let admin = &app.admin;
    let t = admin.totals();
    let queues = admin.queues();
    let config = admin.config();
    let alarm = admin.alarm().unwrap_or_default();
    let mut m = Text(String::new());
    let amqp = "protocol=\"amqp091\"";
    let classic = "protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"";
    m.gauge(
        "rabbitmq_connections",
        "Connections currently open",
        admin.connections().len(),
    );
    m.gauge(
        "rabbitmq_channels",
        "Channels currently open",
        admin.channels().len(),
    );
    m.gauge(
        "rabbitmq_consumers",
        "Consumers currently connected",
        admin.consumers().len(),
    );
    m.gauge("rabbitmq_queues", "Queues available", queues.len());
    type Of = fn(&QueueView) -> u64;
    let per_queue: [(&str, &str, &str, Of); 8] = [
        (
            "rabbitmq_queue_messages_ready",
            "gauge",
            "Messages ready to be delivered to consumers",
            |q| q.ready,
        ),
        (
            "rabbitmq_queue_messages_unacked",
            "gauge",
            "Messages delivered to consumers but not yet acknowledged",
            |q| q.unacked,
        ),
        (
            "rabbitmq_queue_messages",
            "gauge",
            "Sum of ready and unacknowledged messages",
            |q| q.ready + q.unacked,
        ),
        (
            "rabbitmq_queue_messages_bytes",
            "gauge",
            "Size in bytes of ready and unacknowledged messages",
            |q| q.ready_bytes + q.unacked_bytes,
        ),
        (
            "rabbitmq_queue_messages_ready_bytes",
            "gauge",
            "Size in bytes of ready messages",
            |q| q.ready_bytes,
        ),
        (
            "rabbitmq_queue_messages_unacked_bytes",
            "gauge",
            "Size in bytes of all unacknowledged messages",
            |q| q.unacked_bytes,
        ),
        (
            "rabbitmq_queue_consumers",
            "gauge",
            "Consumers on a queue",
            |q| q.consumers as u64,
        ),
        (
            "rabbitmq_queue_messages_published_total",
            "counter",
            "Total number of messages published to queues",
            |q| q.stats.publish,
        ),
    ];
    for (name, kind, help, of) in per_queue {
        m.family(name, kind, help);
        match scope {
            Scope::Aggregated => m.sample(name, "", queues.iter().map(of).sum::<u64>()),
            Scope::PerObject => {
                for q in &queues {
                    let labels =
                        format!("vhost=\"{}\",queue=\"{}\"", label(&q.vhost), label(&q.name));
                    m.sample(name, &labels, of(q));
                }
            }
        }
    }
    m.counter(
        "rabbitmq_global_messages_received_total",
        amqp,
        "Total number of messages received from publishers",
        t.received,
    );
    m.counter(
        "rabbitmq_global_messages_routed_total",
        amqp,
        "Total number of messages routed to queues or streams",
        t.routed,
    );
    m.counter("rabbitmq_global_messages_unroutable_dropped_total", amqp, "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", t.unroutable_dropped);
    m.counter("rabbitmq_global_messages_unroutable_returned_total", amqp, "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", t.unroutable_returned);
    m.counter(
        "rabbitmq_global_messages_confirmed_total",
        amqp,
        "Total number of messages confirmed to publishers",
        admin.confirmed(),
    );
    m.counter(
        "rabbitmq_global_messages_delivered_total",
        classic,
        "Total number of messages delivered to consumers",
        t.delivered(),
    );
    m.counter("rabbitmq_global_messages_delivered_consume_manual_ack_total", classic, "Total number of messages delivered to consumers using basic.consume with manual acknowledgment", t.delivered_consume_manual_ack);
    m.counter("rabbitmq_global_messages_delivered_consume_auto_ack_total", classic, "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment", t.delivered_consume_auto_ack);
    m.counter("rabbitmq_global_messages_delivered_get_manual_ack_total", classic, "Total number of messages delivered to consumers using basic.get with manual acknowledgment", t.delivered_get_manual_ack);
    m.counter("rabbitmq_global_messages_delivered_get_auto_ack_total", classic, "Total number of messages delivered to consumers using basic.get with automatic acknowledgment", t.delivered_get_auto_ack);
    m.counter(
        "rabbitmq_global_messages_get_empty_total",
        classic,
        "Total number of times basic.get operations fetched no message",
        t.get_empty,
    );
    m.counter(
        "rabbitmq_global_messages_redelivered_total",
        classic,
        "Total number of messages redelivered to consumers",
        t.redelivered,
    );
    m.counter(
        "rabbitmq_global_messages_acknowledged_total",
        classic,
        "Total number of messages acknowledged by consumers",
        t.acknowledged,
    );
    let dl = "queue_type=\"rabbit_classic_queue\",dead_letter_strategy=\"at_most_once\"";
    m.counter(
        "rabbitmq_global_messages_dead_lettered_expired_total",
        dl,
        "Total number of messages dead-lettered due to message TTL exceeded",
        t.dead_lettered_expired,
    );
    m.counter(
        "rabbitmq_global_messages_dead_lettered_rejected_total",
        dl,
        "Total number of messages dead-lettered due to basic.reject or basic.nack",
        t.dead_lettered_rejected,
    );
    m.counter(
        "rabbitmq_global_messages_dead_lettered_maxlen_total",
        dl,
        "Total number of messages dead-lettered due to overflow drop-head or reject-publish-dlx",
        t.dead_lettered_maxlen,
    );
    m.counter(
        "rabbitmq_global_messages_dead_lettered_delivery_limit_total",
        "queue_type=\"rabbit_quorum_queue\",dead_letter_strategy=\"at_most_once\"",
        "Total number of messages dead-lettered due to delivery-limit exceeded",
        t.dead_lettered_delivery_limit,
    );
    m.counter(
        "rabbitmq_connections_opened_total",
        "",
        "Total number of connections opened",
        t.connections_opened,
    );
    m.counter(
        "rabbitmq_connections_closed_total",
        "",
        "Total number of connections closed or terminated",
        t.connections_closed,
    );
    m.counter(
        "rabbitmq_channels_opened_total",
        "",
        "Total number of channels opened",
        t.channels_opened,
    );
    m.counter(
        "rabbitmq_channels_closed_total",
        "",
        "Total number of channels closed",
        t.channels_closed,
    );
    m.counter(
        "rabbitmq_queues_declared_total",
        "",
        "Total number of queues declared",
        t.queues_declared,
    );
    m.counter(
        "rabbitmq_queues_created_total",
        "",
        "Total number of queues created",
        t.queues_created,
    );
    m.counter(
        "rabbitmq_queues_deleted_total",
        "",
        "Total number of queues deleted",
        t.queues_deleted,
    );
    m.gauge(
        "rabbitmq_process_resident_memory_bytes",
        "Memory used in bytes",
        system::resident_bytes(),
    );
    m.gauge(
        "rabbitmq_resident_memory_limit_bytes",
        "Memory high watermark in bytes",
        config.memory_high_watermark,
    );
    let disk = config.data_dir.as_deref().map_or(0, system::disk_free);
    m.gauge(
        "rabbitmq_disk_space_available_bytes",
        "Disk space available in bytes",
        disk,
    );
    m.gauge(
        "rabbitmq_disk_space_available_limit_bytes",
        "Free disk space low watermark in bytes",
        config.disk_free_limit,
    );
    m.gauge(
        "rabbitmq_alarms_memory_used_watermark",
        "is 1 if VM memory watermark alarm is in effect",
        alarm.contains("memory") as u8,
    );
    m.gauge(
        "rabbitmq_alarms_free_disk_space_watermark",
        "is 1 if free disk space watermark alarm is in effect",
        alarm.contains("disk") as u8,
    );
    m.gauge(
        "rabbitmq_alarms_file_descriptor_limit",
        "is 1 if file descriptor limit alarm is in effect",
        0,
    );
    m.gauge(
        "rabbitmq_process_open_fds",
        "Open file descriptors",
        system::open_fds(),
    );
    m.gauge(
        "rabbitmq_process_max_fds",
        "Open file descriptors limit",
        system::max_fds(),
    );
    m.gauge(
        "rabbitmq_erlang_uptime_seconds",
        "Node uptime",
        app.started.elapsed().as_secs(),
    );
    m.family(
        "rabbitmq_build_info",
        "untyped",
        "RabbitMQ & Erlang/OTP version info",
    );
    m.sample(
        "rabbitmq_build_info",
        &format!(
            "rabbitmq_version=\"{}\",prometheus_plugin_version=\"{}\",prometheus_client_version=\"none\",erlang_version=\"none\"",
            crate::routes::overview::RABBITMQ_VERSION,
            env!("CARGO_PKG_VERSION")
        ),
        1,
    );
    m.family(
        "rabbitmq_identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
    );
    m.sample(
        "rabbitmq_identity_info",
        &format!(
            "rabbitmq_node=\"{0}\",rabbitmq_cluster=\"{0}\",rabbitmq_cluster_permanent_id=\"bloodbank\"",
            crate::render::NODE
        ),
        1,
    );
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], m.0)
}
