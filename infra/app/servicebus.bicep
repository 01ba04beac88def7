// Service Bus: the trigger queue (job update requests) and the outcome topic with
// its two subscriptions.
//
// Entra only: `disableLocalAuth` turns off SAS keys and connection strings for the
// whole namespace, so access is decided by the data roles in access.bicep alone.
// Standard is the smallest tier with topics and sessions (Basic has neither).
//
// Immutable after creation (changing them means a new entity, docs/deploy.md):
// the queue's `requiresSession` and `requiresDuplicateDetection`, the topic's
// `requiresDuplicateDetection`.

@description('Namespace name (6-50 characters).')
@minLength(6)
@maxLength(50)
param name string

@description('Azure region.')
param location string

@description('Tags for the namespace.')
param tags object = {}

@description('Namespace tier. Standard or Premium: topics and sessions need at least Standard.')
@allowed([
  'Standard'
  'Premium'
])
param sku string = 'Standard'

@description('Trigger queue name (app setting JOB_UPDATES_QUEUE).')
param queueName string = 'job-updates'

@description('Whether the queue requires sessions (must match the trigger: JOB_UPDATES_SESSIONS_ENABLED). Immutable.')
param queueRequiresSession bool = false

@description('Deliveries before a message is dead-lettered (app setting JOB_UPDATES_MAX_DELIVERY_COUNT).')
@minValue(1)
@maxValue(2000)
param queueMaxDeliveryCount int = 10

@description('Peek-lock duration (ISO 8601, at most PT5M). The host renews the lock while the function runs.')
param queueLockDuration string = 'PT1M'

@description('Time to live of an unprocessed message before it expires to the dead-letter queue (ISO 8601).')
param queueDefaultMessageTimeToLive string = 'P14D'

@description('Drop re-sent messages with a MessageId seen within the window. Immutable.')
param queueRequiresDuplicateDetection bool = true

@description('Duplicate detection window of the queue (ISO 8601, 20 seconds to 7 days).')
param queueDuplicateDetectionWindow string = 'PT10M'

@description('Outcome topic name (app setting OUTCOME_TOPIC).')
param topicName string = 'job-outcomes'

@description('Time to live of an outcome event in the topic and its subscriptions (ISO 8601).')
param topicDefaultMessageTimeToLive string = 'P14D'

@description('Deliveries of an outcome event to a subscriber before it is dead-lettered.')
@minValue(1)
@maxValue(2000)
param subscriptionMaxDeliveryCount int = 10

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: queueName
  properties: {
    maxDeliveryCount: queueMaxDeliveryCount
    lockDuration: queueLockDuration
    requiresSession: queueRequiresSession
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: queueDefaultMessageTimeToLive
    requiresDuplicateDetection: queueRequiresDuplicateDetection
    duplicateDetectionHistoryTimeWindow: queueDuplicateDetectionWindow
    enableBatchedOperations: true
    enablePartitioning: false
    maxSizeInMegabytes: 1024
  }
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = {
  parent: namespace
  name: topicName
  properties: {
    // The publisher sets MessageId to the CloudEvent id: a re-published outcome (the
    // same message redelivered to the function) is dropped by the broker.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    defaultMessageTimeToLive: topicDefaultMessageTimeToLive
    enableBatchedOperations: true
    enablePartitioning: false
    supportOrdering: true
    maxSizeInMegabytes: 1024
  }
}

// Every outcome, for audit and downstream consumers.
resource allOutcomes 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = {
  parent: topic
  name: 'all-outcomes'
  properties: {
    maxDeliveryCount: subscriptionMaxDeliveryCount
    lockDuration: 'PT1M'
    deadLetteringOnMessageExpiration: true
    deadLetteringOnFilterEvaluationExceptions: true
    defaultMessageTimeToLive: topicDefaultMessageTimeToLive
  }
}

// Only the outcomes someone must look at: `failed` (final, not retried) and
// `given-up` (transient failures until the last delivery). Routed on the
// application property `outcome` that the publisher sets on each event.
resource failures 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = {
  parent: topic
  name: 'failures'
  properties: {
    maxDeliveryCount: subscriptionMaxDeliveryCount
    lockDuration: 'PT1M'
    deadLetteringOnMessageExpiration: true
    deadLetteringOnFilterEvaluationExceptions: true
    defaultMessageTimeToLive: topicDefaultMessageTimeToLive
  }
}

// The filter IS the subscription's `$Default` rule: a subscription always starts
// with `$Default` (1=1, every message), and whether ARM removes it when another rule
// is created is contested (terraform-provider-azurerm#20718 vs pulumi-azure-native
// #4489/#4799 and terraform-provider-azurerm#32452). Redefining `$Default` leaves no
// catch-all whatever ARM does; CKV_JU_12 fails any other rule name.
resource failuresRule 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = {
  parent: failures
  name: '$Default'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: 'outcome IN (\'failed\', \'given-up\')'
      compatibilityLevel: 20
    }
  }
}

output id string = namespace.id
output name string = namespace.name
// `https://<name>.servicebus.windows.net:443/` (or a sovereign-cloud suffix) -> host name.
output fullyQualifiedNamespace string = replace(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')
output queueId string = queue.id
output queueName string = queue.name
output topicId string = topic.id
output topicName string = topic.name
