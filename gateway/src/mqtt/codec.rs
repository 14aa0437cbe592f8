//! MQTT framing and a version-neutral view of the packets the device endpoint handles.
//!
//! The byte-level codecs for MQTT 3.1.1 and 5 are rumqttc's (`mqttbytes`): well kept,
//! used by its client and broker alike, and it gives both protocol versions. Here we only
//! frame (so an oversized publish can be skipped without buffering it), tell the version
//! from the CONNECT, and map both versions' packets onto [`Inbound`] / [`Outbound`], so the
//! session logic is written once.

use bytes::{Buf, Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

/// The protocol version a connection speaks, fixed by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.
    V5,
}

/// A framing or decoding failure: the connection cannot continue.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The remaining-length field is malformed.
    #[error("malformed remaining length")]
    BadLength,
    /// The bytes are not a valid packet.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// The CONNECT names a protocol level this endpoint does not speak.
    #[error("unsupported protocol level {0}")]
    UnsupportedLevel(u8),
}

/// A frame's fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// First byte (type and flags).
    pub byte1: u8,
    /// Bytes of fixed header (1 + length bytes).
    pub header_len: usize,
    /// Remaining length (variable header + payload).
    pub remaining: usize,
}

impl FrameHeader {
    /// Whole frame length.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.remaining
    }

    /// Packet type nibble.
    pub fn packet_type(&self) -> u8 {
        self.byte1 >> 4
    }
}

/// Reads the fixed header at the start of `buf`; `None` if more bytes are needed.
pub fn peek_header(buf: &[u8]) -> Result<Option<FrameHeader>, CodecError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(FrameHeader {
                byte1: buf[0],
                header_len: 2 + i,
                remaining,
            }));
        }
    }
    Err(CodecError::BadLength)
}

/// What a PUBLISH frame's head says (read without its payload): enough to refuse and
/// acknowledge an oversized one that is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishHead {
    /// Topic.
    pub topic: String,
    /// QoS.
    pub qos: u8,
    /// Packet id (0 for QoS 0).
    pub pkid: u16,
    /// Bytes of the frame the head takes (fixed header included).
    pub len: usize,
}

/// Parses the topic and packet id of a PUBLISH whose fixed header is `h`; `None` if `buf`
/// does not hold them yet.
pub fn peek_publish_head(h: &FrameHeader, buf: &[u8]) -> Result<Option<PublishHead>, CodecError> {
    let qos = (h.byte1 >> 1) & 0b11;
    let start = h.header_len;
    if buf.len() < start + 2 {
        return Ok(None);
    }
    let tlen = u16::from_be_bytes([buf[start], buf[start + 1]]) as usize;
    let id_len = if qos > 0 { 2 } else { 0 };
    let len = start + 2 + tlen + id_len;
    if buf.len() < len {
        return Ok(None);
    }
    let topic = std::str::from_utf8(&buf[start + 2..start + 2 + tlen])
        .map_err(|_| CodecError::Malformed("topic is not UTF-8".into()))?
        .to_string();
    let pkid = if qos > 0 {
        u16::from_be_bytes([buf[start + 2 + tlen], buf[start + 3 + tlen]])
    } else {
        0
    };
    Ok(Some(PublishHead { topic, qos, pkid, len }))
}

/// The protocol version of a complete CONNECT frame.
pub fn connect_version(frame: &[u8], h: &FrameHeader) -> Result<Version, CodecError> {
    let mut b = &frame[h.header_len..];
    if b.len() < 2 {
        return Err(CodecError::Malformed("CONNECT too short".into()));
    }
    let name_len = b.get_u16() as usize;
    if b.len() < name_len + 1 {
        return Err(CodecError::Malformed("CONNECT too short".into()));
    }
    if &b[..name_len] != b"MQTT" {
        // MQTT 3.1 ("MQIsdp") and anything else.
        return Err(CodecError::UnsupportedLevel(b.get(name_len).copied().unwrap_or(0)));
    }
    match b[name_len] {
        4 => Ok(Version::V311),
        5 => Ok(Version::V5),
        other => Err(CodecError::UnsupportedLevel(other)),
    }
}

/// A last will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
}

/// A CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectIn {
    /// Protocol version.
    pub version: Version,
    /// Client id.
    pub client_id: String,
    /// Keep-alive seconds (0 = none).
    pub keep_alive: u16,
    /// Username.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Last will.
    pub will: Option<Will>,
}

/// A PUBLISH from the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishIn {
    /// Topic.
    pub topic: String,
    /// QoS (0, 1, 2).
    pub qos: u8,
    /// Packet id.
    pub pkid: u16,
    /// Retain flag.
    pub retain: bool,
    /// Payload.
    pub payload: Bytes,
}

/// A packet from a device, whatever its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// CONNECT.
    Connect(ConnectIn),
    /// PUBLISH.
    Publish(PublishIn),
    /// PUBACK of a downlink.
    PubAck(u16),
    /// PUBREC (QoS 2 downlinks are never sent; answered for robustness).
    PubRec(u16),
    /// PUBREL of a QoS 2 uplink.
    PubRel(u16),
    /// PUBCOMP.
    PubComp(u16),
    /// SUBSCRIBE: (filter, requested QoS).
    Subscribe {
        /// Packet id.
        pkid: u16,
        /// Filters.
        filters: Vec<(String, u8)>,
    },
    /// UNSUBSCRIBE.
    Unsubscribe {
        /// Packet id.
        pkid: u16,
        /// Filters.
        filters: Vec<String>,
    },
    /// PINGREQ.
    PingReq,
    /// DISCONNECT; `with_will` when an MQTT 5 client asks for its will anyway.
    Disconnect {
        /// MQTT 5 reason 0x04.
        with_will: bool,
    },
    /// A packet a server never receives (CONNACK, SUBACK, …).
    Unexpected(&'static str),
}

fn qos_u8(q: rumqttc::mqttbytes::QoS) -> u8 {
    q as u8
}

fn qos_v5(q: rumqttc::v5::mqttbytes::QoS) -> u8 {
    q as u8
}

/// Decodes one complete frame of `version`.
pub fn decode(version: Version, frame: &[u8]) -> Result<Inbound, CodecError> {
    let mut bytes = BytesMut::from(frame);
    let bad = |e: &dyn std::fmt::Display| CodecError::Malformed(e.to_string());
    Ok(match version {
        Version::V311 => match v4::Packet::read(&mut bytes, usize::MAX).map_err(|e| bad(&e))? {
            v4::Packet::Connect(c) => Inbound::Connect(ConnectIn {
                version,
                client_id: c.client_id,
                keep_alive: c.keep_alive,
                username: c.login.as_ref().map(|l| l.username.clone()),
                password: c.login.map(|l| l.password),
                will: c.last_will.map(|w| Will {
                    topic: w.topic,
                    payload: w.message,
                    qos: qos_u8(w.qos),
                    retain: w.retain,
                }),
            }),
            v4::Packet::Publish(p) => Inbound::Publish(PublishIn {
                topic: p.topic,
                qos: qos_u8(p.qos),
                pkid: p.pkid,
                retain: p.retain,
                payload: p.payload,
            }),
            v4::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
            v4::Packet::PubRec(a) => Inbound::PubRec(a.pkid),
            v4::Packet::PubRel(a) => Inbound::PubRel(a.pkid),
            v4::Packet::PubComp(a) => Inbound::PubComp(a.pkid),
            v4::Packet::Subscribe(s) => Inbound::Subscribe {
                pkid: s.pkid,
                filters: s.filters.into_iter().map(|f| (f.path, qos_u8(f.qos))).collect(),
            },
            v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
                pkid: u.pkid,
                filters: u.topics,
            },
            v4::Packet::PingReq => Inbound::PingReq,
            v4::Packet::Disconnect => Inbound::Disconnect { with_will: false },
            v4::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
            v4::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
            v4::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
            v4::Packet::PingResp => Inbound::Unexpected("PINGRESP"),
        },
        Version::V5 => match v5::Packet::read(&mut bytes, None).map_err(|e| bad(&e))? {
            v5::Packet::Connect(c, will, login) => Inbound::Connect(ConnectIn {
                version,
                client_id: c.client_id,
                keep_alive: c.keep_alive,
                username: login.as_ref().map(|l| l.username.clone()),
                password: login.map(|l| l.password),
                will: will
                    .map(|w| -> Result<Will, CodecError> {
                        Ok(Will {
                            topic: String::from_utf8(w.topic.to_vec())
                                .map_err(|_| CodecError::Malformed("will topic is not UTF-8".into()))?,
                            payload: w.message,
                            qos: qos_v5(w.qos),
                            retain: w.retain,
                        })
                    })
                    .transpose()?,
            }),
            v5::Packet::Publish(p) => Inbound::Publish(PublishIn {
                topic: String::from_utf8(p.topic.to_vec()).map_err(|_| CodecError::Malformed("topic is not UTF-8".into()))?,
                qos: qos_v5(p.qos),
                pkid: p.pkid,
                retain: p.retain,
                payload: p.payload,
            }),
            v5::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
            v5::Packet::PubRec(a) => Inbound::PubRec(a.pkid),
            v5::Packet::PubRel(a) => Inbound::PubRel(a.pkid),
            v5::Packet::PubComp(a) => Inbound::PubComp(a.pkid),
            v5::Packet::Subscribe(s) => Inbound::Subscribe {
                pkid: s.pkid,
                filters: s.filters.into_iter().map(|f| (f.path, qos_v5(f.qos))).collect(),
            },
            v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
                pkid: u.pkid,
                filters: u.filters,
            },
            v5::Packet::PingReq(_) => Inbound::PingReq,
            v5::Packet::Disconnect(d) => Inbound::Disconnect {
                with_will: d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage,
            },
            v5::Packet::Auth(_) => Inbound::Unexpected("AUTH"),
            v5::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
            v5::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
            v5::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
            v5::Packet::PingResp(_) => Inbound::Unexpected("PINGRESP"),
        },
    })
}

/// Why a CONNECT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnRefusal {
    /// Protocol level not spoken.
    ProtocolVersion,
    /// Client id not acceptable.
    BadClientId,
    /// Credentials malformed.
    BadCredentials,
    /// Not authorized (bad signature, unknown/disabled device, stale timestamp, will
    /// outside the device's topics).
    NotAuthorized,
    /// The endpoint is at capacity or shutting down.
    Unavailable,
}

/// Why a publish was refused (MQTT 5 carries it in the PUBACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubRefusal {
    /// Topic outside the device's own `up/`.
    NotAuthorized,
    /// The payload broke the contract.
    PayloadInvalid,
    /// Over 64 KiB.
    TooLarge,
}

/// A packet to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// CONNACK.
    ConnAck(Option<ConnRefusal>),
    /// PUBACK, with a refusal reason where the publish was not applied.
    PubAck {
        /// Packet id.
        pkid: u16,
        /// Why it was refused, if it was.
        refused: Option<(PubRefusal, String)>,
    },
    /// PUBREC for a QoS 2 uplink.
    PubRec(u16),
    /// PUBCOMP for a QoS 2 uplink.
    PubComp(u16),
    /// SUBACK: granted QoS per filter, `None` = refused.
    SubAck {
        /// Packet id.
        pkid: u16,
        /// Per filter.
        codes: Vec<Option<u8>>,
    },
    /// UNSUBACK for `n` filters.
    UnsubAck {
        /// Packet id.
        pkid: u16,
        /// Filter count.
        n: usize,
    },
    /// PINGRESP.
    PingResp,
    /// A downlink PUBLISH.
    Publish {
        /// Topic.
        topic: String,
        /// QoS 0 or 1.
        qos: u8,
        /// Packet id (QoS 1).
        pkid: u16,
        /// Payload.
        payload: Bytes,
    },
}

fn q4(q: u8) -> rumqttc::mqttbytes::QoS {
    match q {
        0 => rumqttc::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::mqttbytes::QoS::ExactlyOnce,
    }
}

fn q5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// Encodes `packet` for a `version` connection onto `out`.
pub fn encode(version: Version, packet: &Outbound, out: &mut BytesMut) -> Result<(), CodecError> {
    let bad = |e: &dyn std::fmt::Display| CodecError::Malformed(e.to_string());
    match version {
        Version::V311 => {
            let p = match packet {
                Outbound::ConnAck(refusal) => v4::Packet::ConnAck(v4::ConnAck::new(
                    match refusal {
                        None => v4::ConnectReturnCode::Success,
                        Some(ConnRefusal::ProtocolVersion) => v4::ConnectReturnCode::RefusedProtocolVersion,
                        Some(ConnRefusal::BadClientId) => v4::ConnectReturnCode::BadClientId,
                        Some(ConnRefusal::BadCredentials) => v4::ConnectReturnCode::BadUserNamePassword,
                        Some(ConnRefusal::NotAuthorized) => v4::ConnectReturnCode::NotAuthorized,
                        Some(ConnRefusal::Unavailable) => v4::ConnectReturnCode::ServiceUnavailable,
                    },
                    false,
                )),
                // 3.1.1 has no negative PUBACK: a refused publish is acknowledged (so the
                // client does not resend it forever) and the refusal is logged and counted.
                Outbound::PubAck { pkid, .. } => v4::Packet::PubAck(v4::PubAck::new(*pkid)),
                Outbound::PubRec(pkid) => v4::Packet::PubRec(v4::PubRec::new(*pkid)),
                Outbound::PubComp(pkid) => v4::Packet::PubComp(v4::PubComp::new(*pkid)),
                Outbound::SubAck { pkid, codes } => v4::Packet::SubAck(v4::SubAck::new(
                    *pkid,
                    codes
                        .iter()
                        .map(|c| match c {
                            Some(q) => v4::SubscribeReasonCode::Success(q4(*q)),
                            None => v4::SubscribeReasonCode::Failure,
                        })
                        .collect(),
                )),
                Outbound::UnsubAck { pkid, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(*pkid)),
                Outbound::PingResp => v4::Packet::PingResp,
                Outbound::Publish { topic, qos, pkid, payload } => {
                    let mut p = v4::Publish::from_bytes(topic.clone(), q4(*qos), payload.clone());
                    p.pkid = *pkid;
                    v4::Packet::Publish(p)
                }
            };
            p.write(out, usize::MAX).map_err(|e| bad(&e))?;
        }
        Version::V5 => {
            let p = match packet {
                Outbound::ConnAck(refusal) => v5::Packet::ConnAck(v5::ConnAck {
                    session_present: false,
                    code: match refusal {
                        None => v5::ConnectReturnCode::Success,
                        Some(ConnRefusal::ProtocolVersion) => v5::ConnectReturnCode::UnsupportedProtocolVersion,
                        Some(ConnRefusal::BadClientId) => v5::ConnectReturnCode::ClientIdentifierNotValid,
                        Some(ConnRefusal::BadCredentials) => v5::ConnectReturnCode::BadUserNamePassword,
                        Some(ConnRefusal::NotAuthorized) => v5::ConnectReturnCode::NotAuthorized,
                        Some(ConnRefusal::Unavailable) => v5::ConnectReturnCode::ServerUnavailable,
                    },
                    properties: refusal.is_none().then(|| v5::ConnAckProperties {
                        max_qos: Some(1),
                        retain_available: Some(1),
                        max_packet_size: Some((crate::mqtt::MAX_FRAME) as u32),
                        topic_alias_max: Some(0),
                        wildcard_subscription_available: Some(1),
                        subscription_identifiers_available: Some(0),
                        shared_subscription_available: Some(0),
                        session_expiry_interval: None,
                        receive_max: None,
                        assigned_client_identifier: None,
                        reason_string: None,
                        user_properties: Vec::new(),
                        server_keep_alive: None,
                        response_information: None,
                        server_reference: None,
                        authentication_method: None,
                        authentication_data: None,
                    }),
                }),
                Outbound::PubAck { pkid, refused } => v5::Packet::PubAck(v5::PubAck {
                    pkid: *pkid,
                    reason: match refused {
                        None => v5::PubAckReason::Success,
                        Some((PubRefusal::NotAuthorized, _)) => v5::PubAckReason::NotAuthorized,
                        Some((PubRefusal::PayloadInvalid, _)) => v5::PubAckReason::PayloadFormatInvalid,
                        Some((PubRefusal::TooLarge, _)) => v5::PubAckReason::ImplementationSpecificError,
                    },
                    properties: refused.as_ref().map(|(_, why)| v5::PubAckProperties {
                        reason_string: Some(why.chars().take(200).collect()),
                        user_properties: Vec::new(),
                    }),
                }),
                Outbound::PubRec(pkid) => v5::Packet::PubRec(v5::PubRec::new(*pkid, None)),
                Outbound::PubComp(pkid) => v5::Packet::PubComp(v5::PubComp::new(*pkid, None)),
                Outbound::SubAck { pkid, codes } => v5::Packet::SubAck(v5::SubAck {
                    pkid: *pkid,
                    return_codes: codes
                        .iter()
                        .map(|c| match c {
                            Some(q) => v5::SubscribeReasonCode::Success(q5(*q)),
                            None => v5::SubscribeReasonCode::NotAuthorized,
                        })
                        .collect(),
                    properties: None,
                }),
                Outbound::UnsubAck { pkid, n } => v5::Packet::UnsubAck(v5::UnsubAck {
                    pkid: *pkid,
                    reasons: vec![v5::UnsubAckReason::Success; *n],
                    properties: None,
                }),
                Outbound::PingResp => v5::Packet::PingResp(v5::PingResp),
                Outbound::Publish { topic, qos, pkid, payload } => {
                    let mut p = v5::Publish::new(topic.clone(), q5(*qos), payload.clone(), None);
                    p.pkid = *pkid;
                    v5::Packet::Publish(p)
                }
            };
            p.write(out, None).map_err(|e| bad(&e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_connect(level_v5: bool) -> BytesMut {
        let mut out = BytesMut::new();
        if level_v5 {
            let c = v5::Connect {
                keep_alive: 30,
                client_id: "pk.dn".into(),
                clean_start: true,
                properties: None,
            };
            let login = v5::Login {
                username: "pk.dn|1".into(),
                password: "ab".into(),
            };
            v5::Packet::Connect(c, None, Some(login)).write(&mut out, None).unwrap();
        } else {
            let mut c = v4::Connect::new("pk.dn");
            c.set_login("pk.dn|1", "ab");
            v4::Packet::Connect(c).write(&mut out, usize::MAX).unwrap();
        }
        out
    }

    #[test]
    fn both_versions_decode_to_one_connect() {
        for v5 in [false, true] {
            let frame = v4_connect(v5);
            let h = peek_header(&frame).unwrap().unwrap();
            assert_eq!(h.frame_len(), frame.len());
            let version = connect_version(&frame, &h).unwrap();
            assert_eq!(version, if v5 { Version::V5 } else { Version::V311 });
            let Inbound::Connect(c) = decode(version, &frame).unwrap() else {
                panic!("not a connect")
            };
            assert_eq!(c.client_id, "pk.dn");
            assert_eq!(c.username.as_deref(), Some("pk.dn|1"));
            assert_eq!(c.password.as_deref(), Some("ab"));
        }
    }

    #[test]
    fn a_partial_header_asks_for_more_and_a_bad_length_is_an_error() {
        assert_eq!(peek_header(&[0x30]).unwrap(), None);
        assert_eq!(peek_header(&[0x30, 0x80]).unwrap(), None);
        assert!(peek_header(&[0x30, 0xff, 0xff, 0xff, 0xff]).is_err());
        let h = peek_header(&[0x30, 0x80, 0x80, 0x04]).unwrap().unwrap();
        assert_eq!(h.remaining, 65536);
        assert_eq!(h.header_len, 4);
    }

    #[test]
    fn the_head_of_a_publish_gives_topic_and_packet_id() {
        let mut out = BytesMut::new();
        let mut p = v4::Publish::new("a/b/up/weight", rumqttc::mqttbytes::QoS::AtLeastOnce, vec![0u8; 300]);
        p.pkid = 7;
        v4::Packet::Publish(p).write(&mut out, usize::MAX).unwrap();
        let h = peek_header(&out).unwrap().unwrap();
        assert_eq!(peek_publish_head(&h, &out[..5]).unwrap(), None);
        let head = peek_publish_head(&h, &out).unwrap().unwrap();
        assert_eq!(head.topic, "a/b/up/weight");
        assert_eq!((head.qos, head.pkid), (1, 7));
    }

    #[test]
    fn mqtt_3_1_is_refused_by_level() {
        // "MQIsdp" level 3.
        let frame = [0x10, 0x0c, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3c];
        let h = peek_header(&frame).unwrap().unwrap();
        assert!(matches!(connect_version(&frame, &h), Err(CodecError::UnsupportedLevel(3))));
    }
}
