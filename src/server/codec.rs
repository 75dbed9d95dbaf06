//! The protobuf codec of Verdict's gRPC services: prost's, except that a message that does not
//! decode is INVALID_ARGUMENT with a one-line reason, not INTERNAL with prost's trail of every
//! field it was in (a Struct nested 200 deep made a multi-kilobyte message of it). The caller
//! sent something malformed; nothing went wrong inside.

use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// The codec the generated services and clients use (`build.rs` names it).
#[derive(Debug, Clone)]
pub struct Codec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(ProstCodec::default())
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ConciseDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ConciseDecoder(self.0.decoder())
    }
}

/// prost's decoder with concise errors.
#[derive(Debug, Clone)]
pub struct ConciseDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for ConciseDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0
            .decode(buf)
            .map_err(|status| Status::invalid_argument(concise(status.message())))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// `failed to decode Protobuf message: Struct.fields: Value.kind: ...: recursion limit reached`
/// -> `not a valid protobuf message: recursion limit reached (at depth 100)`.
fn concise(message: &str) -> String {
    let rest = message
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(message);
    let mut depth = 0;
    let mut reason = rest;
    // The trail is `Message.field: ` entries; the reason follows them.
    while let Some((head, tail)) = reason.split_once(": ") {
        let is_field = head.contains('.')
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
        if !is_field {
            break;
        }
        depth += 1;
        reason = tail;
    }
    let reason: String = reason.chars().take(200).collect();
    if reason.contains("recursion limit") {
        format!(
            "not a valid protobuf message: {reason} (values nested {depth} levels deep; \
             attributes may nest at most limits.max_attr_depth levels)"
        )
    } else if depth > 0 {
        format!("not a valid protobuf message: {reason} ({depth} fields deep)")
    } else {
        format!("not a valid protobuf message: {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trail_of_fields_is_counted_not_repeated() {
        let trail = "Value.kind: Struct.fields: ".repeat(50);
        let message = format!("failed to decode Protobuf message: {trail}recursion limit reached");
        let short = concise(&message);
        assert_eq!(
            short,
            "not a valid protobuf message: recursion limit reached (values nested 100 levels \
             deep; attributes may nest at most limits.max_attr_depth levels)"
        );
        assert_eq!(
            concise("failed to decode Protobuf message: CheckRequest.request_id: invalid string value: data is not UTF-8 encoded"),
            "not a valid protobuf message: invalid string value: data is not UTF-8 encoded (1 fields deep)"
        );
        assert_eq!(
            concise("failed to decode Protobuf message: buffer underflow"),
            "not a valid protobuf message: buffer underflow"
        );
    }
}
