package smtpprobe

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

// FuzzReadReply feeds arbitrary bytes to the SMTP reply reader (session.read over a
// bufio.Reader, as a probe reads a server), reading replies one after another as a
// pipelining client would. The reader never panics and stays bounded: a reply has at
// most maxReplyLine lines of at most maxLineLen octets, and a failed read consumes at
// most one buffer more than that. It fails only with ErrSyntax or an end of input. A
// reply it returns is RFC 5321 §4.2: every line starts with the same 3-digit code from
// 200 to 599, all but the last carry '-', the text is the lines after "code-", and
// writing the reply out again reads back to the same Reply.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"220 mx.example.test ESMTP\r\n",
		"250-mx.example.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
		"220 hi\r\n250 ok\r\n221 bye\r\n",
		"250\n250-\n250 \n",
		"250-a\r\n251 b\r\n",
		"250*x\r\n",
		"199 x\r\n600 x\r\n+25 x\r\n",
		"250-a\r\n250 b",
		"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
		strings.Repeat("\xff", 100) + "\r\n",
		strings.Repeat("250-x\r\n", maxReplyLine-1) + "250 last\r\n",
		strings.Repeat("250-x\r\n", maxReplyLine) + "250 last\r\n",
		"250 " + strings.Repeat("x", maxLineLen-4) + "\r\n",
		"250 " + strings.Repeat("x", maxLineLen-3) + "\r\n",
		"250 " + strings.Repeat("x", bufSize) + "\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bytes.NewReader(data)
		s := &session{r: bufio.NewReaderSize(src, bufSize)}
		consumed := func() int { return len(data) - src.Len() - s.r.Buffered() }
		for range 8 {
			before := consumed()
			r, err := s.read()
			used := consumed() - before
			if err != nil {
				if r != (Reply{}) {
					t.Fatalf("read = %+v with error %v; want a zero Reply", r, err)
				}
				if !errors.Is(err, ErrSyntax) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("read error %v (%T); want ErrSyntax, io.EOF or io.ErrUnexpectedEOF", err, err)
				}
				if limit := (maxReplyLine-1)*(maxLineLen+2) + bufSize; used > limit {
					t.Fatalf("failed read consumed %d bytes; limit %d", used, limit)
				}
				// The error quotes at most maxQuoted bytes of the peer's line, each
				// written as at most 4 ("\xff").
				if limit := len(ErrSyntax.Error()) + len(`: ""...`) + 4*maxQuoted; len(err.Error()) > limit {
					t.Fatalf("error of %d bytes, limit %d: %.400q", len(err.Error()), limit, err)
				}
				return
			}
			checkReply(t, data[before:before+used], r)
		}
	})
}

// checkReply checks a reply read from raw, the bytes read consumed for it.
func checkReply(t *testing.T, raw []byte, r Reply) {
	t.Helper()
	if r.Code < 200 || r.Code > 599 {
		t.Fatalf("reply %q: code %d", raw, r.Code)
	}
	text := strings.Split(r.Text, "\n")
	if len(text) > maxReplyLine {
		t.Fatalf("reply %.200q: %d lines", raw, len(text))
	}
	if len(raw) == 0 || raw[len(raw)-1] != '\n' {
		t.Fatalf("reply %.200q does not end at a line end", raw)
	}
	lines := strings.Split(string(raw[:len(raw)-1]), "\n")
	if len(lines) != len(text) {
		t.Fatalf("reply %.200q: %d lines read, %d in the text %q", raw, len(lines), len(text), r.Text)
	}
	code := strconv.Itoa(r.Code)
	for i, line := range lines {
		line = strings.TrimSuffix(line, "\r")
		last := i == len(lines)-1
		switch {
		case len(line) > maxLineLen:
			t.Fatalf("reply %.200q: line %d has %d octets", raw, i, len(line))
		case !strings.HasPrefix(line, code):
			t.Fatalf("reply %.200q: line %d %q does not start with %s", raw, i, line, code)
		case len(line) == 3:
			if !last || text[i] != "" {
				t.Fatalf("reply %.200q: code-only line %d read as %q, last %v", raw, i, text[i], last)
			}
		case line[3] == '-' && last, line[3] == ' ' && !last, line[3] != '-' && line[3] != ' ':
			t.Fatalf("reply %.200q: line %d %q has the wrong separator", raw, i, line)
		case line[4:] != text[i]:
			t.Fatalf("reply %.200q: line %d %q read as %q", raw, i, line, text[i])
		}
	}

	var out strings.Builder
	for i, line := range text {
		sep := "-"
		if i == len(text)-1 {
			sep = " "
		}
		out.WriteString(code + sep + line + "\r\n")
	}
	again, err := (&session{r: bufio.NewReaderSize(strings.NewReader(out.String()), bufSize)}).read()
	if err != nil || again != r {
		t.Fatalf("reply %+v written as %.200q reads back as %+v, %v", r, out.String(), again, err)
	}
}
