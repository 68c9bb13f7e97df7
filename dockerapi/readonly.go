package dockerapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// engine is all of the Docker SDK client that berth may call: reads, each a
// GET or HEAD. Client holds its SDK clients only as engines, so that no code,
// in this package or out of it, can reach the SDK's other calls. That matters
// beyond tidiness: readOnlyTransport refuses every write that goes through
// the HTTP client, but the SDK's attach, exec-attach and other hijacked calls
// dial the daemon themselves and write their POST on the raw connection,
// where no transport sees it. Adding a method here is adding a call to the
// daemon; TestEngineIsReadOnly lists the ones allowed.
type engine interface {
	Ping(ctx context.Context) (types.Ping, error)                                                                  // HEAD /_ping (GET if refused)
	NegotiateAPIVersionPing(p types.Ping)                                                                          // no request
	ClientVersion() string                                                                                         // no request
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)                            // GET /containers/{id}/json
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)                    // GET /containers/json
	ContainerLogs(ctx context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error)               // GET /containers/{id}/logs
	ImageInspect(ctx context.Context, id string, opts ...client.ImageInspectOption) (image.InspectResponse, error) // GET /images/{id}/json
	Close() error                                                                                                  // no request
}

// errMethodRefused says that berth's transport refused a request that would
// change something: berth only reads from Docker.
var errMethodRefused = errors.New("berth only reads from Docker: method refused")

// readOnlyTransport refuses every method but GET and HEAD before the request
// reaches the connection. When libpod is set, it records there that an
// answer came from Podman (its Libpod-Api-Version header).
type readOnlyTransport struct {
	base   http.RoundTripper
	libpod *atomic.Bool
}

func (t readOnlyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("%w: %s %s", errMethodRefused, req.Method, req.URL.Path)
	}
	resp, err := t.base.RoundTrip(req)
	if resp != nil && t.libpod != nil && resp.Header.Get("Libpod-Api-Version") != "" {
		t.libpod.Store(true)
	}
	return resp, err
}
