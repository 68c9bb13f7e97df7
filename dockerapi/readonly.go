package dockerapi

import (
	"errors"
	"fmt"
	"net/http"
)

// errMethodRefused says that berth's transport refused a request that would
// change something: berth only reads from Docker.
var errMethodRefused = errors.New("berth only reads from Docker: method refused")

// readOnlyTransport refuses every method but GET and HEAD before the request
// reaches the connection.
type readOnlyTransport struct{ base http.RoundTripper }

func (t readOnlyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("%w: %s %s", errMethodRefused, req.Method, req.URL.Path)
	}
	return t.base.RoundTrip(req)
}
