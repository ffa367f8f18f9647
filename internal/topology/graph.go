package topology

import (
	"fmt"
	"strings"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// Graphs are pictures of a plan's topology, for docs, status and tooling.
// Both show the same nodes and edges: steps; the caller, orchestrator, gateway,
// broker and read model where the plan has them; dependencies and chain hops
// as solid edges, the orchestrator's calls as dashed ones, events as bold
// edges labelled with their type.
type Graphs struct {
	// DOT is a Graphviz digraph.
	DOT string
	// Mermaid is a Mermaid flowchart.
	Mermaid string
}

// Graph draws the plan. It is deterministic: the same plan gives the same text.
func Graph(p *plan.Plan) Graphs {
	g := buildGraph(p)
	return Graphs{DOT: g.dot(p), Mermaid: g.mermaid()}
}

type nodeShape int

const (
	shapeStep nodeShape = iota
	shapeClient
	shapeOrchestrator
	shapeGateway
	shapeStore
)

type edgeKind int

const (
	edgeFlow  edgeKind = iota // data passes from one step to the next
	edgeCall                  // a component calls a step or another component
	edgeEvent                 // an event, labelled with its type
	edgeLink                  // a component uses the broker
)

type node struct {
	id, label string
	shape     nodeShape
}

type edge struct {
	from, to, label string
	kind            edgeKind
}

type graph struct {
	nodes []node
	edges []edge
}

const (
	idClient       = "client"
	idOrchestrator = "orchestrator"
	idGateway      = "gateway"
	idBroker       = "broker"
	idReadModel    = "readmodel"
)

// stepID keeps step nodes apart from the fixed ones; step names are DNS
// labels, so mapping '-' to '_' keeps them apart from each other.
func stepID(name string) string { return "step_" + strings.ReplaceAll(name, "-", "_") }

func buildGraph(p *plan.Plan) *graph {
	g := &graph{}
	async := p.Style.IsAsync()
	g.nodes = append(g.nodes, node{idClient, "client", shapeClient})
	if p.Roles.Gateway {
		g.nodes = append(g.nodes, node{idGateway, "gateway\n" + p.Entry.Service, shapeGateway})
	}
	if p.Roles.Orchestrator {
		g.nodes = append(g.nodes, node{idOrchestrator, "orchestrator\n" + plan.ChildName(p.Workflow, p.Style, plan.OrchestratorRole), shapeOrchestrator})
	}
	if p.Roles.Broker {
		label := "broker " + p.Roles.BrokerName
		if async {
			label += "\nstream " + p.Stream.Name
		}
		g.nodes = append(g.nodes, node{idBroker, label, shapeStore})
	}
	if p.ReadModel != nil {
		g.nodes = append(g.nodes, node{idReadModel, "read model\n" + p.ReadModel.Bucket, shapeStore})
	}
	for _, s := range p.Steps {
		label := s.Name
		if s.Replicas > 1 {
			label += fmt.Sprintf("\n×%d", s.Replicas)
		}
		g.nodes = append(g.nodes, node{stepID(s.Name), label, shapeStep})
	}

	// How a request arrives and how the components hang together.
	switch p.Entry.Kind {
	case plan.EntryStep:
		g.edges = append(g.edges, edge{idClient, stepID(p.Entry.Step), "HTTP", edgeCall})
	case plan.EntryOrchestrator:
		g.edges = append(g.edges, edge{idClient, idOrchestrator, "HTTP", edgeCall})
	case plan.EntryGateway:
		g.edges = append(g.edges, edge{idClient, idGateway, "HTTP", edgeCall})
		if p.Roles.Orchestrator {
			g.edges = append(g.edges, edge{idGateway, idOrchestrator, "start run", edgeCall})
		}
	}
	if p.Roles.Broker {
		if p.Roles.Gateway {
			g.edges = append(g.edges, edge{idGateway, idBroker, "", edgeLink})
		}
		if p.Roles.Orchestrator {
			g.edges = append(g.edges, edge{idOrchestrator, idBroker, "", edgeLink})
		}
	}

	// The orchestrator's calls, then the data flow between steps.
	call := "HTTP"
	if async {
		call = "cmd"
	}
	for _, s := range p.Steps {
		if s.Mode == plan.ModeOrchestrated {
			g.edges = append(g.edges, edge{idOrchestrator, stepID(s.Name), call, edgeCall})
		}
	}
	for _, s := range p.Steps {
		switch s.Mode {
		case plan.ModeChain:
			for _, n := range s.Output.Next {
				g.edges = append(g.edges, edge{stepID(s.Name), stepID(n), "HTTP", edgeFlow})
			}
		case plan.ModeOrchestrated:
			for _, d := range s.DependsOn {
				g.edges = append(g.edges, edge{stepID(d), stepID(s.Name), "", edgeFlow})
			}
		}
	}

	// Events, by type: emitter to subscriber, to the gateway when it completes
	// a run, to the read model when projected, else to the broker.
	for _, r := range p.Events {
		for _, e := range r.Emitters {
			from := stepID(e)
			if e == plan.EntryEmitter {
				from = idGateway
			}
			for _, s := range r.Subscribers {
				g.edges = append(g.edges, edge{from, stepID(s), r.Type, edgeEvent})
			}
			if r.Completes {
				g.edges = append(g.edges, edge{from, idGateway, r.Type + " (completes)", edgeEvent})
			}
			if r.Projected {
				g.edges = append(g.edges, edge{from, idReadModel, r.Type + " (projected)", edgeEvent})
			}
			if len(r.Subscribers) == 0 && !r.Completes && !r.Projected {
				g.edges = append(g.edges, edge{from, idBroker, r.Type, edgeEvent})
			}
		}
	}
	if p.ReadModel != nil && p.Roles.Gateway {
		g.edges = append(g.edges, edge{idReadModel, idGateway, "GET /query", edgeCall})
	}
	return g
}

func (g *graph) dot(p *plan.Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n", dotQuote(p.Workflow))
	fmt.Fprintf(&b, "  graph [rankdir=LR, labelloc=t, fontname=Helvetica, label=%s];\n", dotQuote(p.Namespace+"/"+p.Workflow+" ("+string(p.Style)+")"))
	b.WriteString("  node [fontname=Helvetica, shape=box, style=rounded];\n")
	b.WriteString("  edge [fontname=Helvetica, fontsize=10];\n")
	for _, n := range g.nodes {
		attrs := "label=" + dotQuote(n.label)
		switch n.shape {
		case shapeClient:
			attrs += ", shape=plaintext"
		case shapeOrchestrator:
			attrs += ", shape=component, style=solid"
		case shapeGateway:
			attrs += ", shape=hexagon, style=solid"
		case shapeStore:
			attrs += ", shape=cylinder, style=solid"
		}
		fmt.Fprintf(&b, "  %s [%s];\n", dotQuote(n.id), attrs)
	}
	for _, e := range g.edges {
		var attrs []string
		if e.label != "" {
			attrs = append(attrs, "label="+dotQuote(e.label))
		}
		switch e.kind {
		case edgeCall:
			attrs = append(attrs, "style=dashed")
		case edgeEvent:
			attrs = append(attrs, "style=bold", "color=\"#1f6feb\"", "fontcolor=\"#1f6feb\"")
		case edgeLink:
			attrs = append(attrs, "style=dotted", "arrowhead=none")
		}
		line := "  " + dotQuote(e.from) + " -> " + dotQuote(e.to)
		if len(attrs) > 0 {
			line += " [" + strings.Join(attrs, ", ") + "]"
		}
		b.WriteString(line + ";\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func (g *graph) mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for _, n := range g.nodes {
		label := mermaidQuote(n.label)
		switch n.shape {
		case shapeStep:
			fmt.Fprintf(&b, "  %s[%s]\n", n.id, label)
		case shapeClient:
			fmt.Fprintf(&b, "  %s([%s])\n", n.id, label)
		case shapeOrchestrator:
			fmt.Fprintf(&b, "  %s[[%s]]\n", n.id, label)
		case shapeGateway:
			fmt.Fprintf(&b, "  %s{{%s}}\n", n.id, label)
		case shapeStore:
			fmt.Fprintf(&b, "  %s[(%s)]\n", n.id, label)
		}
	}
	for _, e := range g.edges {
		arrow := map[edgeKind]string{edgeFlow: "-->", edgeCall: "-.->", edgeEvent: "==>", edgeLink: "-.-"}[e.kind]
		if e.label != "" {
			arrow += "|" + mermaidQuote(e.label) + "|"
		}
		fmt.Fprintf(&b, "  %s %s %s\n", e.from, arrow, e.to)
	}
	return b.String()
}

// mermaidQuote makes a quoted Mermaid label; a newline becomes <br/>.
func mermaidQuote(s string) string {
	s = strings.ReplaceAll(s, `"`, "#quot;")
	return `"` + strings.ReplaceAll(s, "\n", "<br/>") + `"`
}
