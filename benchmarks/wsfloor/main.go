// Command wsfloor is the WebSocket fan-out benchmark's floor: the cheapest fan-out this machine can do.
//
// It accepts WebSocket connections (a minimal RFC 6455 server handshake), greets each with the platform's
// `welcome` frame and answers a subscribe op with a `subscribed` frame, as cfd_server/ws does, so
// benchmarks/wsload takes it for the real server. A tick is then one prebuilt unmasked text frame (the
// platform's `price` frame shape) written with a bare write system call to every subscribed socket in turn,
// from one OS thread (or from several, each with its share of the sockets): no bus, no queues, no
// per-client goroutines. Whatever the real server does on top of that is overhead; what is left is the
// kernel's TCP path and the readers.
//
// It talks to ws_fanout.py over stdin/stdout: it prints "listening PORT" at start; "run RATE COUNT FIRST_TS
// WRITERS" publishes COUNT ticks at RATE per second with ts FIRST_TS, FIRST_TS+1, ... and answers
// "done COUNT WRITES FAILED" and one line per tick "TS START_NS END_NS" (wall clock ns around its writes:
// the clock of Python's time.time_ns()); "quit" exits.
package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// subscribers holds the fds that get every tick; the publisher holds the read lock for a whole tick, so
// a connection's fd is closed only between ticks.
var subscribers struct {
	sync.RWMutex
	fds map[int]bool
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "host:port to listen on (port 0: any free one)")
	flag.Parse()
	subscribers.fds = map[int]bool{}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		fatal(err)
	}
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				fatal(err)
			}
			go serve(conn.(*net.TCPConn))
		}
	}()
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "listening %d\n", listener.Addr().(*net.TCPAddr).Port)
	out.Flush()

	commands := bufio.NewScanner(os.Stdin)
	for commands.Scan() {
		fields := strings.Fields(commands.Text())
		switch {
		case len(fields) == 5 && fields[0] == "run":
			rate := must(strconv.ParseFloat(fields[1], 64))
			count := must(strconv.Atoi(fields[2]))
			first := must(strconv.ParseInt(fields[3], 10, 64))
			writers := must(strconv.Atoi(fields[4]))
			run(out, rate, count, first, max(1, writers))
		case len(fields) == 1 && fields[0] == "quit":
			fmt.Fprintln(out, "bye")
			out.Flush()
			return
		default:
			fatal(fmt.Errorf("unknown command %q", commands.Text()))
		}
	}
}

// serve does the handshake, answers the client's ops, and adds its fd to the subscribers on subscribe.
func serve(conn *net.TCPConn) {
	defer conn.Close()
	reader := bufio.NewReader(conn)
	key := ""
	for {
		line, err := reader.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Sec-WebSocket-Key") {
			key = strings.TrimSpace(value)
		}
	}
	if key == "" {
		conn.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	digest := sha1.Sum([]byte(key + wsGUID))
	welcome := fmt.Sprintf(`{"type":"welcome","version":"0.1.0","server_time":%d,"max_frame_bytes":65536,`+
		`"max_subscriptions":50}`, time.Now().UnixMilli())
	response := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(digest[:]) + "\r\n\r\n"
	if _, err := conn.Write(append([]byte(response), frame(0x1, []byte(welcome))...)); err != nil {
		return
	}
	fd := -1
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(s uintptr) { fd = int(s) })
	defer func() {
		subscribers.Lock()
		delete(subscribers.fds, fd)
		subscribers.Unlock()
	}()
	for {
		opcode, payload, err := readFrame(reader)
		if err != nil {
			return
		}
		switch opcode {
		case 0x1:
			var op struct {
				Op       string   `json:"op"`
				Channels []string `json:"channels"`
			}
			if json.Unmarshal(payload, &op) != nil || op.Op != "subscribe" {
				continue
			}
			// registered before the reply, so a client that saw `subscribed` gets every tick after it
			subscribers.Lock()
			subscribers.fds[fd] = true
			subscribers.Unlock()
			reply := must(json.Marshal(map[string]any{"type": "subscribed", "channels": op.Channels}))
			if _, err := conn.Write(frame(0x1, reply)); err != nil {
				return
			}
		case 0x8:
			conn.Write(frame(0x8, payload))
			return
		case 0x9:
			conn.Write(frame(0xA, payload))
		}
	}
}

// readFrame reads one (masked) client frame and returns its opcode and unmasked payload.
func readFrame(reader *bufio.Reader) (byte, []byte, error) {
	var head [2]byte
	if _, err := io.ReadFull(reader, head[:]); err != nil {
		return 0, nil, err
	}
	length := uint64(head[1] & 0x7f)
	switch length {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(reader, ext[:]); err != nil {
			return 0, nil, err
		}
		length = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(reader, ext[:]); err != nil {
			return 0, nil, err
		}
		length = binary.BigEndian.Uint64(ext[:])
	}
	if length > 1<<20 {
		return 0, nil, errors.New("frame too large")
	}
	var mask [4]byte
	if head[1]&0x80 != 0 {
		if _, err := io.ReadFull(reader, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload := make([]byte, length)
	if _, err := io.ReadFull(reader, payload); err != nil {
		return 0, nil, err
	}
	for i := range payload {
		payload[i] ^= mask[i%4]
	}
	return head[0] & 0x0f, payload, nil
}

// frame builds an unmasked server frame.
func frame(opcode byte, payload []byte) []byte {
	out := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		out = append(out, byte(n))
	case n < 1<<16:
		out = binary.BigEndian.AppendUint16(append(out, 126), uint16(n))
	default:
		out = binary.BigEndian.AppendUint64(append(out, 127), uint64(n))
	}
	return append(out, payload...)
}

// priceFrame is the platform's price frame for a tick, `ts` last as wsload expects.
func priceFrame(seq int64, ts int64) []byte {
	cents := 18500 + seq%1000
	bid := fmt.Sprintf("%d.%02d", cents/100, cents%100)
	ask := fmt.Sprintf("%d.%02d", (cents+2)/100, (cents+2)%100)
	mid := fmt.Sprintf("%d.%02d", (cents+1)/100, (cents+1)%100)
	return frame(0x1, fmt.Appendf(nil, `{"type":"price","symbol":"SOL_USDC","bid":"%s","ask":"%s","mid":"%s","ts":%d}`,
		bid, ask, mid, ts))
}

// share is one writer's part of a tick.
type share struct {
	fds   []int
	frame []byte
}

// writeAll writes the frame to each fd and returns the writes that failed.
func writeAll(fds []int, data []byte) int {
	failed := 0
	for _, fd := range fds {
		if n, err := syscall.Write(fd, data); err != nil || n != len(data) {
			failed++
		}
	}
	return failed
}

// run publishes count ticks at rate per second, the sockets split over writers OS threads (the calling
// goroutine being the first), and reports each tick's publish and end times.
func run(out *bufio.Writer, rate float64, count int, first int64, writers int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	work := make([]chan share, writers-1)
	failures := make(chan int, writers)
	for i := range work {
		work[i] = make(chan share)
		go func() {
			runtime.LockOSThread()
			for s := range work[i] {
				failures <- writeAll(s.fds, s.frame)
			}
		}()
	}
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	lines := make([]string, 0, count)
	writes, failed := 0, 0
	for i := range count {
		ts := first + int64(i)
		data := priceFrame(ts, ts)
		subscribers.RLock()
		fds := make([]int, 0, len(subscribers.fds))
		for fd := range subscribers.fds {
			fds = append(fds, fd)
		}
		part := (len(fds) + writers - 1) / writers
		began := time.Now().UnixNano()
		for w := range work {
			lo := min(len(fds), (w+1)*part)
			work[w] <- share{fds[lo:min(len(fds), lo+part)], data}
		}
		failed += writeAll(fds[:min(len(fds), part)], data)
		for range work {
			failed += <-failures
		}
		ended := time.Now().UnixNano()
		subscribers.RUnlock()
		writes += len(fds)
		lines = append(lines, fmt.Sprintf("%d %d %d", ts, began, ended))
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * interval)))
	}
	for _, w := range work {
		close(w)
	}
	fmt.Fprintf(out, "done %d %d %d\n", count, writes-failed, failed)
	for _, line := range lines {
		fmt.Fprintln(out, line)
	}
	out.Flush()
}

func must[T any](value T, err error) T {
	if err != nil {
		fatal(err)
	}
	return value
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "wsfloor:", err)
	os.Exit(1)
}
