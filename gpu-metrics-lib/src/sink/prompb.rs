//! The Prometheus remote-write 1.0 messages (`prompb/remote.proto`,
//! `prompb/types.proto`), written by hand with `prost` (no `protoc` at build
//! time). Only what a sender needs: samples, no exemplars, histograms or
//! metadata (fields a receiver does not find are simply absent).

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// Field 1: the series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Field 1: labels, sorted by name, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Field 2: samples in timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Field 1.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Field 2.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Field 1.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Field 2: milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// The bytes a Go `prompb` encoder writes for the same request (field
    /// tags, wire types, packed-free repeated messages): checked by hand
    /// against the proto definitions.
    #[test]
    fn encoding_matches_the_proto_wire_format() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1000,
                }],
            }],
        };
        let bytes = req.encode_to_vec();
        let expected: Vec<u8> = [
            &[0x0a, 30][..],       // timeseries, len 30
            &[0x0a, 14, 0x0a, 8],  // labels, len 14; name len 8
            b"__name__",           //
            &[0x12, 2],            // value len 2
            b"up",                 //
            &[0x12, 12, 0x09],     // samples, len 12; value: fixed64
            &1.0f64.to_le_bytes(), //
            &[0x10, 0xe8, 0x07],   // timestamp varint 1000
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(WriteRequest::decode(bytes.as_slice()).unwrap(), req);
    }
}
