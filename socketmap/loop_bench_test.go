package socketmap

import (
	"bufio"
	"testing"
)

// BenchmarkCachedLoop is the server's own CPU time per cached lookup: 100 requests on a
// connection without a socket, so no system calls.
func BenchmarkCachedLoop(b *testing.B) {
	var in []byte
	for range 100 {
		in = appendNetstring(in, "QUERY hot17.load.test")
	}
	s := &Server{Handler: echoHandler{}}
	s.init()
	pc := newPipeConn(in)
	c := newConn(s, pc)
	b.ReportAllocs()
	for b.Loop() {
		pc.reset(in)
		s.serveConn(c)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/lookup")
}

// BenchmarkBudgetedLoop is the same through Lookup, with budget and watchdog.
func BenchmarkBudgetedLoop(b *testing.B) {
	var in []byte
	for range 100 {
		in = appendNetstring(in, "QUERY hot17.load.test")
	}
	s := &Server{Handler: HandlerFunc(echoHandler{}.Lookup)}
	s.init()
	pc := newPipeConn(in)
	c := newConn(s, pc)
	b.ReportAllocs()
	for b.Loop() {
		pc.reset(in)
		s.serveConn(c)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/lookup")
}

// BenchmarkNoopLoop is a minimal netstring responder on the same input, for comparison.
func BenchmarkNoopLoop(b *testing.B) {
	var in []byte
	for range 100 {
		in = appendNetstring(in, "QUERY hot17.load.test")
	}
	pc := newPipeConn(in)
	br := bufio.NewReaderSize(pc, 4096)
	reply := []byte("4:OK x,")
	b.ReportAllocs()
	for b.Loop() {
		pc.reset(in)
		br.Reset(pc)
		for {
			n := 0
			for {
				ch, err := br.ReadByte()
				if err != nil {
					goto done
				}
				if ch == ':' {
					break
				}
				n = n*10 + int(ch-'0')
			}
			br.Discard(n + 1)
			pc.Write(reply)
		}
	done:
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/lookup")
}
