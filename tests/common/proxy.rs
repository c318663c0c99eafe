//! An HTTP `CONNECT` proxy on loopback, as a corporate network has: it
//! resolves the names it is asked for from its own table (the edge's names
//! exist in no DNS), counts the tunnels it opened, and copies bytes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct ConnectProxy {
    pub port: u16,
    tunnels: Arc<AtomicUsize>,
}

impl ConnectProxy {
    /// Serves `names` (`host:port` → where it really is) until the test ends.
    pub fn start(names: HashMap<String, SocketAddr>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().unwrap().port();
        let tunnels = Arc::new(AtomicUsize::new(0));
        let names = Arc::new(names);
        let counted = tunnels.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let names = names.clone();
                let counted = counted.clone();
                std::thread::spawn(move || tunnel(client, &names, &counted));
            }
        });
        ConnectProxy { port, tunnels }
    }

    /// The tunnels opened so far.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

fn tunnel(client: TcpStream, names: &HashMap<String, SocketAddr>, counted: &AtomicUsize) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    // the rest of the head
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let mut client = client;
    let Some(origin) = names.get(&target).and_then(|a| TcpStream::connect(a).ok()) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    counted.fetch_add(1, Ordering::SeqCst);
    if client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let (mut from_client, mut to_origin) = (reader, origin.try_clone().unwrap());
    let (mut from_origin, mut to_client) = (origin, client);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_origin);
        let _ = to_origin.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut from_origin, &mut to_client);
    let _ = to_client.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}
