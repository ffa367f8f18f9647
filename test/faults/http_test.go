//go:build faults

package faults

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// answer is what a caller got.
type answer struct {
	code   int
	header http.Header
	body   []byte
}

// runError decodes the JSON error of a failed run.
func (a answer) runError() contract.Error {
	GinkgoHelper()
	var e contract.Error
	Expect(json.Unmarshal(a.body, &e)).To(Succeed(), "a failed run answers JSON: %s", a.body)
	return e
}

// client opens a connection per request: a kept-alive one could outlive its
// process, or reach a later process on the same port.
var client = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}

// do sends a request and reads the whole answer.
func do(method, url string, header http.Header, body []byte) (answer, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, header: resp.Header, body: b}, err
}

func whenPost(url string, header http.Header, body string) answer {
	GinkgoHelper()
	if header == nil {
		header = http.Header{}
	}
	if header.Get("Content-Type") == "" {
		header.Set("Content-Type", "application/json")
	}
	a, err := do(http.MethodPost, url, header, []byte(body))
	Expect(err).NotTo(HaveOccurred(), "POST %s", url)
	return a
}

func whenGet(url string) answer {
	GinkgoHelper()
	a, err := do(http.MethodGet, url, nil, nil)
	Expect(err).NotTo(HaveOccurred(), "GET %s", url)
	return a
}

func getJSON(url string, into any) {
	GinkgoHelper()
	a := whenGet(url)
	Expect(a.code).To(Equal(http.StatusOK), "GET %s: %s", url, a.body)
	Expect(json.Unmarshal(a.body, into)).To(Succeed())
}
