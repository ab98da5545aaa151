// Command wsload is the WebSocket fan-out benchmark's load generator: many cheap feed clients in one process.
//
// Each client connects to ws://ADDR/ws and subscribes to one channel; for every text frame holding a
// `"ts":N}` field it records the pair (N, receive time in ns since the Unix epoch: the clock of Python's
// time.time_ns()). The time is taken once per read system call, as the Python clients of ws_fanout.py do.
//
// After the handshake the connections leave Go's netpoller: -threads OS threads each wait on an epoll set
// of their own and read every ready socket once per wake-up, as wrk does. A goroutine per connection would
// cost a second read per message (the one that returns EAGAIN) plus scheduler work; here a message costs
// one read.
//
// It talks to ws_fanout.py over stdin/stdout: it prints "ready N" once every client is subscribed, then
// answers each "collect" line with "data N" and N little-endian int64 pairs (ts, receive ns) gathered since
// the last collect, and exits on "quit" or end of input.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	subscribedMarker = []byte(`"type":"subscribed"`)
	tsField          = []byte(`"ts":`)
	ready            atomic.Int64
)

// client is one connection's read state; only its poller's thread touches it.
type client struct {
	fd         int
	buf        []byte
	subscribed bool
}

// poller reads the clients of one epoll set on one OS thread.
type poller struct {
	epfd    int
	clients map[int32]*client
	mu      sync.Mutex
	pairs   []int64 // ts, receive ns, ts, receive ns, ...
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8001", "the WebSocket server's host:port")
	count := flag.Int("n", 1, "clients")
	channel := flag.String("channel", "prices.SOL_USDC", "the channel every client subscribes to")
	threads := flag.Int("threads", 1, "reader threads (each with an epoll set of its own)")
	batch := flag.Int("batch", 250, "clients connecting at once")
	spin := flag.Duration("spin", 0, "keep polling (without sleeping) this long after the last message")
	flag.Parse()

	pollers := make([]*poller, *threads)
	for i := range pollers {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			fatal(err)
		}
		pollers[i] = &poller{epfd: epfd, clients: map[int32]*client{}}
	}
	subscribe := masked(0x1, must(json.Marshal(map[string]any{"op": "subscribe", "channels": []string{*channel}})))
	var fds []int
	for start := 0; start < *count; start += *batch {
		end := min(start+*batch, *count)
		opened := make([]*client, end-start)
		var wg sync.WaitGroup
		for i := range opened {
			wg.Add(1)
			go func() {
				defer wg.Done()
				opened[i] = must(open(*addr, subscribe))
			}()
		}
		wg.Wait()
		for i, c := range opened {
			p := pollers[(start+i)%len(pollers)]
			p.clients[int32(c.fd)] = c
			fds = append(fds, c.fd)
			event := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(c.fd)}
			if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, c.fd, &event); err != nil {
				fatal(err)
			}
		}
	}
	for _, p := range pollers {
		for _, c := range p.clients {
			p.parse(c, time.Now().UnixNano()) // what came with the handshake response
		}
		go p.run(*spin)
	}
	deadline := time.Now().Add(60 * time.Second)
	for ready.Load() < int64(*count) {
		if time.Now().After(deadline) {
			fatal(fmt.Errorf("only %d of %d clients subscribed after 60 s", ready.Load(), *count))
		}
		time.Sleep(5 * time.Millisecond)
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	fmt.Fprintf(out, "ready %d\n", *count)
	out.Flush()

	commands := bufio.NewScanner(os.Stdin)
	for commands.Scan() {
		switch commands.Text() {
		case "collect":
			var all []int64
			for _, p := range pollers {
				p.mu.Lock()
				all = append(all, p.pairs...)
				p.pairs = p.pairs[:0]
				p.mu.Unlock()
			}
			fmt.Fprintf(out, "data %d\n", len(all)/2)
			must(0, binary.Write(out, binary.LittleEndian, all))
			out.Flush()
		case "quit":
			for _, fd := range fds {
				syscall.Close(fd)
			}
			fmt.Fprintln(out, "bye")
			out.Flush()
			return
		}
	}
}

// open connects, upgrades and subscribes; the client's socket is then non-blocking and out of Go's netpoller.
func open(addr string, subscribe []byte) (*client, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close() // the client keeps a duplicate of the socket
	key := make([]byte, 16)
	rand.Read(key)
	request := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err = conn.Write([]byte(request)); err != nil {
		return nil, err
	}
	var response []byte
	chunk := make([]byte, 4096)
	for {
		n, err := conn.Read(chunk)
		if err != nil {
			return nil, err
		}
		response = append(response, chunk[:n]...)
		if end := bytes.Index(response, []byte("\r\n\r\n")); end >= 0 {
			if !bytes.Contains(response[:end], []byte(" 101 ")) {
				return nil, fmt.Errorf("handshake refused: %q", response[:end])
			}
			response = response[end+4:]
			break
		}
	}
	if _, err = conn.Write(subscribe); err != nil {
		return nil, err
	}
	file, err := conn.(*net.TCPConn).File()
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Dup(int(file.Fd()))
	file.Close()
	if err != nil {
		return nil, err
	}
	if err = syscall.SetNonblock(fd, true); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, 16*1024)
	return &client{fd: fd, buf: append(buf, response...)}, nil
}

func (p *poller) run(spin time.Duration) {
	runtime.LockOSThread()
	events := make([]syscall.EpollEvent, 1024)
	lastEvent := time.Now()
	for {
		timeout := -1
		if spin > 0 && time.Since(lastEvent) < spin {
			timeout = 0
		}
		n, err := syscall.EpollWait(p.epfd, events, timeout)
		if err == syscall.EINTR || n == 0 {
			continue
		}
		if err != nil {
			fatal(err)
		}
		lastEvent = time.Now()
		p.mu.Lock()
		for _, event := range events[:n] {
			c := p.clients[event.Fd]
			if c == nil {
				continue
			}
			if len(c.buf) == cap(c.buf) {
				c.buf = append(c.buf, make([]byte, len(c.buf))...)[:len(c.buf)]
			}
			read, err := syscall.Read(c.fd, c.buf[len(c.buf):cap(c.buf)])
			now := time.Now().UnixNano()
			if err == syscall.EAGAIN {
				continue
			}
			if err != nil || read == 0 { // closed
				syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
				delete(p.clients, event.Fd)
				continue
			}
			c.buf = c.buf[:len(c.buf)+read]
			p.parse(c, now)
		}
		p.mu.Unlock()
	}
}

// parse consumes the complete frames in c.buf, recording the ts of every price frame.
func (p *poller) parse(c *client, now int64) {
	consumed := 0
	for {
		frame := c.buf[consumed:]
		if len(frame) < 2 {
			break
		}
		opcode := frame[0] & 0x0f
		length, header := int(frame[1]&0x7f), 2
		if length == 126 {
			if len(frame) < 4 {
				break
			}
			length, header = int(binary.BigEndian.Uint16(frame[2:4])), 4
		} else if length == 127 {
			if len(frame) < 10 {
				break
			}
			length, header = int(binary.BigEndian.Uint64(frame[2:10])), 10
		}
		if len(frame) < header+length {
			break
		}
		payload := frame[header : header+length]
		consumed += header + length
		switch opcode {
		case 0x1:
			if !c.subscribed && bytes.Contains(payload, subscribedMarker) {
				c.subscribed = true
				ready.Add(1)
			} else if ts, ok := tsOf(payload); ok {
				p.pairs = append(p.pairs, ts, now)
			}
		case 0x9:
			syscall.Write(c.fd, masked(0xA, payload))
		}
	}
	c.buf = c.buf[:copy(c.buf, c.buf[consumed:])]
}

// tsOf finds `"ts":N}` (the last field of a price frame) and returns N.
func tsOf(payload []byte) (int64, bool) {
	at := bytes.LastIndex(payload, tsField)
	if at < 0 {
		return 0, false
	}
	var ts int64
	digits := 0
	for _, b := range payload[at+len(tsField):] {
		if b < '0' || b > '9' {
			return ts, digits > 0 && b == '}'
		}
		ts = ts*10 + int64(b-'0')
		digits++
	}
	return 0, false
}

// masked builds a client frame (a client's frames must be masked) with a payload under 126 bytes.
func masked(opcode byte, payload []byte) []byte {
	if len(payload) >= 126 {
		fatal(fmt.Errorf("frame payload of %d bytes: only short frames are sent", len(payload)))
	}
	mask := make([]byte, 4)
	rand.Read(mask)
	frame := append([]byte{0x80 | opcode, 0x80 | byte(len(payload))}, mask...)
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	return frame
}

func must[T any](value T, err error) T {
	if err != nil {
		fatal(err)
	}
	return value
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "wsload:", err)
	os.Exit(1)
}
