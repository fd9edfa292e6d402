//! Raw WebSocket clients for tests that need to misbehave or read frames themselves.

use collab::rpc::{Codec, proto};
use futures::StreamExt;
use prost::Message as _;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

use super::{TestServer, within};

pub type Raw = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

pub fn upgrade_request(
    server: &TestServer,
    token: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = server.rpc_url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request.headers_mut().insert(
        "x-collab-protocol-version",
        proto::PROTOCOL_VERSION.to_string().parse().unwrap(),
    );
    request
}

pub async fn raw_connect(server: &TestServer, login: &str) -> Raw {
    let token = server.token(login).await;
    let (socket, _) = tokio_tungstenite::connect_async(upgrade_request(server, &token))
        .await
        .unwrap();
    socket
}

/// Reads envelopes until one satisfies `pick`; panics on close or timeout.
pub async fn next_envelope(
    socket: &mut Raw,
    pick: impl Fn(&proto::Envelope) -> bool,
) -> proto::Envelope {
    within("an envelope", async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    let envelope = *Codec::default().decode(bytes).unwrap();
                    if pick(&envelope) {
                        return envelope;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected an envelope, got {other:?}"),
            }
        }
    })
    .await
}

/// Reads until the server ends the connection (after which its metrics are final).
pub async fn until_end(
    socket: &mut (
             impl futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin
         ),
) {
    within("the connection to end", async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
}

/// Reads until the server's error and close frame; returns both.
pub async fn error_then_close(socket: &mut Raw) -> (proto::Error, CloseCode) {
    let envelope = next_envelope(socket, |e| {
        matches!(e.payload, Some(proto::envelope::Payload::Error(_)))
    })
    .await;
    let Some(proto::envelope::Payload::Error(error)) = envelope.payload else {
        unreachable!()
    };
    assert_eq!(
        envelope.responding_to, None,
        "a frame error is not a response"
    );
    let code = within("the close frame", async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code,
                Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await;
    until_end(socket).await;
    (error, code)
}

pub fn ping_envelope(id: u32) -> Vec<u8> {
    proto::Envelope {
        id,
        payload: Some(proto::envelope::Payload::Ping(proto::Ping {})),
        ..Default::default()
    }
    .encode_to_vec()
}

pub async fn next_envelope_stream(
    stream: &mut (
             impl futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin
         ),
) -> proto::Error {
    within("an error envelope", async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    let envelope = Codec::default().decode(bytes).unwrap();
                    if let Some(proto::envelope::Payload::Error(error)) = envelope.payload {
                        return error;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("expected an error envelope, got {other:?}"),
            }
        }
    })
    .await
}

/// Sends a `Ping` with envelope id `id` and waits for its `Ack`.
pub async fn ping_ack(socket: &mut Raw, id: u32) {
    use futures::SinkExt;
    socket
        .send(Message::Binary(ping_envelope(id).into()))
        .await
        .unwrap();
    let ack = next_envelope(socket, |e| e.responding_to == Some(id)).await;
    assert!(
        matches!(ack.payload, Some(proto::envelope::Payload::Ack(_))),
        "{ack:?}"
    );
}
