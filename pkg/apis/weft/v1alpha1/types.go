package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConnectionStatus of a tunnel to a remote cluster.
// +kubebuilder:validation:Enum=connected;connecting;error
type ConnectionStatus string

// Connection statuses.
const (
	Connected  ConnectionStatus = "connected"
	Connecting ConnectionStatus = "connecting"
	Error      ConnectionStatus = "error"
)

// HAStatus of a gateway node.
// +kubebuilder:validation:Enum=active;passive
type HAStatus string

// HA statuses.
const (
	HAActive  HAStatus = "active"
	HAPassive HAStatus = "passive"
)

// EndpointSpec is where a cluster's active gateway is reached.
type EndpointSpec struct {
	// Gateway node name.
	// +kubebuilder:validation:MaxLength=253
	Gateway string `json:"gateway,omitempty"`
	// WireGuard public key, base64.
	// +kubebuilder:validation:MaxLength=44
	PublicKey string `json:"publicKey,omitempty"`
	// +kubebuilder:validation:MaxLength=45
	PrivateIP string `json:"privateIP,omitempty"`
	// +kubebuilder:validation:MaxLength=45
	PublicIP string `json:"publicIP,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
	// +kubebuilder:validation:MaxLength=45
	HealthCheckIP string `json:"healthCheckIP,omitempty"`
	// WireGuard backend: kernel or userspace.
	// +kubebuilder:validation:MaxLength=16
	Backend string `json:"backend,omitempty"`
}

// RTT statistics of health probes through a tunnel, in microseconds.
type RTT struct {
	LastMicros   int64 `json:"lastMicros"`
	MinMicros    int64 `json:"minMicros"`
	AvgMicros    int64 `json:"avgMicros"`
	MaxMicros    int64 `json:"maxMicros"`
	StdDevMicros int64 `json:"stdDevMicros"`
	// Loss is the fraction of recent probes lost, in percent.
	LossPercent int32 `json:"lossPercent"`
}

// Connection is a gateway's tunnel to one remote cluster.
type Connection struct {
	// +kubebuilder:validation:MaxLength=63
	ClusterID string           `json:"clusterID"`
	Status    ConnectionStatus `json:"status"`
	// UsingIP is the remote address the tunnel currently uses.
	// +kubebuilder:validation:MaxLength=45
	UsingIP       string       `json:"usingIP,omitempty"`
	Endpoint      EndpointSpec `json:"endpoint,omitempty"`
	LastHandshake *metav1.Time `json:"lastHandshake,omitempty"`
	RxBytes       int64        `json:"rxBytes,omitempty"`
	TxBytes       int64        `json:"txBytes,omitempty"`
	RTT           *RTT         `json:"rtt,omitempty"`
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// GatewayStatus is what a gateway node reports.
type GatewayStatus struct {
	HAStatus      HAStatus     `json:"haStatus,omitempty"`
	LocalEndpoint EndpointSpec `json:"localEndpoint,omitempty"`
	// +kubebuilder:validation:MaxItems=1024
	Connections []Connection `json:"connections,omitempty"`
	// BrokerConnected says whether the gateway's broker watch is up.
	BrokerConnected bool `json:"brokerConnected"`
	// Conditions, e.g. RemoteRecordsValid.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Gateway is the status of one gateway node (named after the node).
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="HA",type=string,JSONPath=`.status.haStatus`
// +kubebuilder:printcolumn:name="Backend",type=string,JSONPath=`.status.localEndpoint.backend`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.localEndpoint.publicIP`
// +kubebuilder:printcolumn:name="Broker",type=boolean,JSONPath=`.status.brokerConnected`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Gateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Status            GatewayStatus `json:"status,omitempty"`
}

// GatewayList lists Gateways.
// +kubebuilder:object:root=true
type GatewayList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Gateway `json:"items"`
}

// RemoteClusterSpec is a remote cluster as validated from the broker.
type RemoteClusterSpec struct {
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	ClusterID string `json:"clusterID"`
	// Subnets routed to the cluster (its endpoint's validated subnets).
	// +kubebuilder:validation:MaxItems=32
	Subnets []string `json:"subnets,omitempty"`
	// +kubebuilder:validation:MaxLength=43
	GlobalCIDR string       `json:"globalCIDR,omitempty"`
	Endpoint   EndpointSpec `json:"endpoint,omitempty"`
}

// RemoteClusterStatus is the tunnel's state as the active gateway sees it.
type RemoteClusterStatus struct {
	Connection ConnectionStatus `json:"connection,omitempty"`
	// +kubebuilder:validation:MaxLength=45
	UsingIP       string       `json:"usingIP,omitempty"`
	LastHandshake *metav1.Time `json:"lastHandshake,omitempty"`
	RTT           *RTT         `json:"rtt,omitempty"`
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// RemoteCluster is one remote cluster, written by the active gateway and
// read by route agents.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.clusterID`
// +kubebuilder:printcolumn:name="Subnets",type=string,JSONPath=`.spec.subnets`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.endpoint.publicIP`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.connection`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RemoteCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RemoteClusterSpec   `json:"spec"`
	Status            RemoteClusterStatus `json:"status,omitempty"`
}

// RemoteClusterList lists RemoteClusters.
// +kubebuilder:object:root=true
type RemoteClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RemoteCluster `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Gateway{}, &GatewayList{}, &RemoteCluster{}, &RemoteClusterList{})
}
