//! Load tools that drive any AMQP 0.9.1 broker over real sockets, so Bloodbank and RabbitMQ
//! are measured the same way in the same run.

pub mod blast;
pub mod http;
pub mod load;
