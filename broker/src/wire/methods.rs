//! The (class, method) ids of AMQP 0.9.1, so an unknown method is told apart from a malformed one.

/// Class ids, and the (class, method) ids the broker names in errors: each written once.
pub mod method_ids {
    pub const CONNECTION: u16 = 10;
    pub const CHANNEL: u16 = 20;
    pub const ACCESS: u16 = 30;
    pub const EXCHANGE: u16 = 40;
    pub const QUEUE: u16 = 50;
    pub const BASIC: u16 = 60;
    pub const CONFIRM: u16 = 85;
    pub const TX: u16 = 90;

    pub const CONNECTION_OPEN: (u16, u16) = (CONNECTION, 40);
    pub const BASIC_PUBLISH: (u16, u16) = (BASIC, 40);
}

/// Is `class_id.method_id` a method of AMQP 0.9.1 (with RabbitMQ's extensions)?
pub fn is_known_method(class_id: u16, method_id: u16) -> bool {
    use method_ids::*;
    let methods: &[u16] = match class_id {
        CONNECTION => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71],
        CHANNEL => &[10, 11, 20, 21, 40, 41],
        ACCESS => &[10, 11],
        EXCHANGE => &[10, 11, 20, 21, 30, 31, 40, 51],
        QUEUE => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],
        BASIC => &[
            10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120,
        ],
        CONFIRM => &[10, 11],
        TX => &[10, 11, 20, 21, 30, 31],
        _ => &[],
    };
    methods.contains(&method_id)
}
