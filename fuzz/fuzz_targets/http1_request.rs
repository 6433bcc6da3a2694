//! Fuzzes `decode_request`: it must never panic, and a complete decode must consume no more
//! than the input and give the same result on the consumed prefix alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringchat::proto::http1::{Decode, HEADERS_COUNT_MAX, decode_request};

fuzz_target!(|data: &[u8]| {
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    if let Ok(Decode::Complete { value, consumed }) = decode_request(data, &mut slots) {
        assert!(consumed <= data.len());
        let (method, target, framing) = (value.method.to_string(), value.target.to_string(), value.framing);
        let mut again = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
        match decode_request(&data[..consumed], &mut again) {
            Ok(Decode::Complete { value, consumed: c }) => {
                assert_eq!(c, consumed);
                assert_eq!((value.method, value.target, value.framing), (method.as_str(), target.as_str(), framing));
            }
            other => panic!("prefix decoded differently: {other:?}"),
        }
    }
});
