use std::io::Read;
use std::io::Result as IoResult;
use std::sync::mpsc::channel;
use std::sync::mpsc::{Receiver, Sender};

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF. If the limit is not reached
/// when the destructor is called, the remaining bytes will be read and
/// thrown away.
pub struct EqualReader<R>
where
    R: Read,
{
    reader: R,
    size: usize,
    last_read_signal: Sender<IoResult<()>>,
    failed: bool,
}

impl<R> EqualReader<R>
where
    R: Read,
{
    pub fn new(reader: R, size: usize) -> (EqualReader<R>, Receiver<IoResult<()>>) {
        let (tx, rx) = channel();

        let r = EqualReader {
            reader,
            size,
            last_read_signal: tx,
            failed: false,
        };

        (r, rx)
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.size == 0 {
            return Ok(0);
        }

        let buf = if buf.len() < self.size {
            buf
        } else {
            &mut buf[..self.size]
        };

        match self.reader.read(buf) {
            Ok(len) => {
                self.size -= len;
                Ok(len)
            }
            err @ Err(_) => {
                self.failed = true;
                err
            }
        }
    }
}

/// aif: at most this much of an unread body is drained so the connection can
/// serve the next request (and a client still sending a body refused with 413
/// reads the answer instead of a reset); beyond, the connection is closed.
const MAX_DRAIN: usize = 4 * 1024 * 1024;

impl<R> Drop for EqualReader<R>
where
    R: Read,
{
    // aif: upstream allocated a buffer of the whole declared remaining size
    // (one `Content-Length: 100000000000` aborted the process) and read all
    // of it. This drains through a 64 KiB buffer, at most `MAX_DRAIN` bytes,
    // and reports `Ok` only when the body was consumed to its end.
    fn drop(&mut self) {
        let mut remaining_to_read = self.size;
        if remaining_to_read == 0 {
            self.last_read_signal.send(Ok(())).ok();
            return;
        }
        if self.failed || remaining_to_read > MAX_DRAIN {
            let e = std::io::Error::new(std::io::ErrorKind::Other, "body not drained");
            self.last_read_signal.send(Err(e)).ok();
            return;
        }
        let mut buf = vec![0; remaining_to_read.min(64 * 1024)];
        while remaining_to_read > 0 {
            let want = remaining_to_read.min(buf.len());
            match self.reader.read(&mut buf[..want]) {
                Err(e) => {
                    self.last_read_signal.send(Err(e)).ok();
                    return;
                }
                Ok(0) => {
                    let e =
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "body cut short");
                    self.last_read_signal.send(Err(e)).ok();
                    return;
                }
                Ok(n) => remaining_to_read -= n,
            }
        }
        self.last_read_signal.send(Ok(())).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::EqualReader;
    use std::io::Read;

    #[test]
    fn test_limit() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5);

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn test_not_enough() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5);

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }
}
