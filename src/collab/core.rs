//! Messages every connection uses.

use super::Session;
use crate::{
    error::Result,
    rpc::{Response, proto},
};

/// `Ping` → `Ack`: an application-level liveness check that goes through the handler
/// loop (unlike WebSocket pings), so it also proves the server is processing messages.
pub async fn ping(_: proto::Ping, response: Response<proto::Ping>, _: Session) -> Result<()> {
    response.send(proto::Ack {})?;
    Ok(())
}
