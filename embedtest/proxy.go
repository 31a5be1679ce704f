package embedtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// proxyDialTimeout bounds the proxy's connect to its target. The target is
// on loopback, where a connect succeeds or is refused at once.
const proxyDialTimeout = 2 * time.Second

// proxyChunk is the largest read the proxy forwards as one chunk.
const proxyChunk = 32 << 10

// proxyQueue is how many chunks may wait out their latency in each
// direction of a connection before the proxy stops reading from it.
const proxyQueue = 64

// Proxy is a TCP proxy on 127.0.0.1 in front of one address, usually a
// member's client URL, that can cut or slow the traffic through it. Point
// a client at Endpoint to put it behind the proxy; Cluster.NewProxy makes
// one for a member.
//
// Cut blackholes traffic both ways without closing connections, as a
// network partition does: the proxy keeps reading and discards what it
// reads, so both ends see silence rather than an error. A byte stream
// with a gap in it cannot be resumed, so Heal closes the connections that
// lost bytes; clients reconnect, as they would after a long partition.
// Connections that lost nothing carry on.
//
// A Proxy is safe for concurrent use. Close stops it and every goroutine
// it started.
type Proxy struct {
	target string
	scheme string // of Endpoint: "https" in front of a WithTLS member
	ln     net.Listener
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
	// closeEnd is closed when the first Close has finished.
	closeEnd chan struct{}

	mu      sync.Mutex
	closed  bool
	cut     bool
	latency time.Duration
	conns   map[*proxyConn]struct{}
}

// proxyConn is one client connection and the proxy's connection to the
// target on its behalf.
type proxyConn struct {
	client, server net.Conn
	done           chan struct{} // closed by close
	once           sync.Once
	halves         atomic.Int32 // directions that ended with a half close
	lost           bool         // bytes were discarded; guarded by Proxy.mu
}

type chunk struct {
	data []byte
	due  time.Time
}

// StartProxy starts a proxy on a free port of 127.0.0.1 that forwards to
// target, a "host:port" address. Close it when done.
func StartProxy(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("%w: proxy target %q: %v", ErrInvalidOption, target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("embedtest: proxy listen: %w", err)
	}
	p := &Proxy{
		target:   target,
		scheme:   "http",
		ln:       ln,
		done:     make(chan struct{}),
		closeEnd: make(chan struct{}),
		conns:    map[*proxyConn]struct{}{},
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// NewProxy starts a Proxy in front of member i's client URL. It forwards
// to the member's address even while the member is stopped, so it keeps
// working across Restart; connections made while the member is down are
// closed at once, as a refused connect would be. Close closes the proxy
// too.
func (c *Cluster) NewProxy(i int) (*Proxy, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	m, err := c.member(i)
	if err != nil {
		return nil, err
	}
	p, err := StartProxy(m.clientURL.Host)
	if err != nil {
		return nil, err
	}
	p.scheme = c.clientScheme()
	if err := c.onClose(p.Close); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Endpoint returns the proxy's URL for clientv3.Config.Endpoints, such as
// "http://127.0.0.1:40123", or https in front of a member of a cluster
// started WithTLS (the proxy forwards the TLS bytes untouched).
func (p *Proxy) Endpoint() string { return p.scheme + "://" + p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Cut starts discarding all traffic through the proxy, both ways, on open
// connections and new ones, until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
}

// Heal ends a Cut and closes the connections that lost bytes during it.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut = false
	var broken []*proxyConn
	for pc := range p.conns {
		if pc.lost {
			broken = append(broken, pc)
		}
	}
	p.mu.Unlock()
	for _, pc := range broken {
		p.drop(pc)
	}
}

// SetLatency delays each chunk of data by d in each direction, so a
// request and its response take at least 2d more. It applies to data read
// from then on. A d of zero or less removes the delay.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = max(d, 0)
}

// Close stops the proxy: it closes the listener and every connection, and
// waits for its goroutines to end.
//
// Close is idempotent: a second call, or one made while the first is in
// progress, waits for the first to finish and returns nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.closeEnd
		return nil
	}
	p.closed = true
	defer close(p.closeEnd)
	conns := make([]*proxyConn, 0, len(p.conns))
	for pc := range p.conns {
		conns = append(conns, pc)
	}
	p.mu.Unlock()

	close(p.done)
	err := p.ln.Close()
	for _, pc := range conns {
		p.drop(pc)
	}
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil { // closed by Close, or out of file descriptors
			return
		}
		p.wg.Add(1)
		go p.connect(conn)
	}
}

// connect dials the target for a client connection and starts copying.
func (p *Proxy) connect(client net.Conn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: proxyDialTimeout}
	server, err := d.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	pc := &proxyConn{client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	p.conns[pc] = struct{}{}
	p.mu.Unlock()

	up := make(chan chunk, proxyQueue)
	down := make(chan chunk, proxyQueue)
	p.wg.Add(4)
	go p.read(pc, client, up)
	go p.write(pc, server, up)
	go p.read(pc, server, down)
	go p.write(pc, client, down)
}

// drop closes both sides of pc and forgets it. Its goroutines then end.
func (p *Proxy) drop(pc *proxyConn) {
	pc.once.Do(func() {
		close(pc.done)
		pc.client.Close()
		pc.server.Close()
		p.mu.Lock()
		delete(p.conns, pc)
		p.mu.Unlock()
	})
}

// pass reports whether data may go through pc now, and with what delay.
// While cut, it records that pc lost data.
func (p *Proxy) pass(pc *proxyConn) (bool, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		pc.lost = true
		return false, 0
	}
	return true, p.latency
}

// read reads from src and queues what it reads for write, stamped with
// when it is due. At EOF it closes out, so that write passes the half
// close on once the data before it is written; unless the proxy is cut,
// which swallows the close too.
func (p *Proxy) read(pc *proxyConn, src net.Conn, out chan<- chunk) {
	defer p.wg.Done()
	for {
		buf := make([]byte, proxyChunk)
		n, err := src.Read(buf)
		if n > 0 {
			if ok, lat := p.pass(pc); ok {
				select {
				case out <- chunk{data: buf[:n], due: time.Now().Add(lat)}:
				case <-pc.done:
					return
				}
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			if ok, _ := p.pass(pc); ok {
				close(out)
			}
			return
		default:
			p.drop(pc)
			return
		}
	}
}

// write writes queued chunks to dst once due, unless a Cut began while
// they waited. When both directions have ended, it closes the connection.
func (p *Proxy) write(pc *proxyConn, dst net.Conn, in <-chan chunk) {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-in:
		case <-pc.done:
			return
		}
		if !ok {
			if tc, isTCP := dst.(*net.TCPConn); isTCP {
				tc.CloseWrite()
			}
			if pc.halves.Add(1) == 2 {
				p.drop(pc)
			}
			return
		}
		if wait := time.Until(c.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-pc.done:
				return
			}
		}
		if ok, _ := p.pass(pc); !ok {
			continue
		}
		if _, err := dst.Write(c.data); err != nil {
			p.drop(pc)
			return
		}
	}
}
