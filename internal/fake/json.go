package fake

import (
	"encoding/json"
	"fmt"
	"strings"
)

// DecodeUniqueKeys decodes one JSON object (a log line) and fails on a key that appears
// twice: most decoders silently keep the last, so a log pipeline would lose the first.
func DecodeUniqueKeys(line string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object (%v)", err)
	}
	m := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("key %q appears twice", key)
		}
		m[key] = v
	}
	return m, nil
}
