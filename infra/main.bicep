// Job update function: Service Bus queue -> validate -> PATCH an EXISTING Batch
// account's jobs -> CloudEvents outcome events on a Service Bus topic.
//
// Subscription-scoped like the Azure-Samples azd templates: creates the resource
// group, then one module per concern (app/*.bicep). The Batch account is not
// created: its resource id is a parameter, and the only change made to it is one
// role assignment (app/batch-access.bicep), in its own resource group/subscription.
//
// Checked offline by .ci/infra-check.sh (checkov + custom checks in infra/checks):
// keep to the Bicep subset checkov's parser reads (no user-defined types, `func`,
// `import`, lambdas or spread).

targetScope = 'subscription'

// ---------------------------------------------------------------------------------
// azd environment
// ---------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('azd environment name; seeds the resource names.')
param environmentName string

@minLength(1)
@description('Region of every created resource (Flex Consumption must be available there).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

// azd always fills principalId with the signed-in identity (the CI principal in a
// pipeline), whatever AZURE_PRINCIPAL_ID holds: whether people get data roles is
// decided by grantDeveloperAccess alone.
@description('Object id of the signed-in user or CI principal (azd fills it). Used only when grantDeveloperAccess is true.')
param principalId string = ''

@description('Kind of principalId.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Grant principalId the app\'s data roles in the resource group (dev environments). false in production.')
param grantDeveloperAccess bool = false

@description('Also grant principalId the Batch role on the existing account (needs grantDeveloperAccess; dev environments only).')
param principalBatchAccess bool = false

// ---------------------------------------------------------------------------------
// The existing Batch account
// ---------------------------------------------------------------------------------

@minLength(1)
@description('Resource id of the EXISTING Batch account: /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Batch/batchAccounts/<name>.')
param batchAccountResourceId string

@description('Its endpoint, e.g. https://acct.westeurope.batch.azure.com. Empty: read from the account.')
param batchAccountEndpoint string = ''

@description('Grant Azure Batch Data Contributor (jobs + pools: auto-pool specifications) instead of Azure Batch Job Submitter (jobs only).')
param allowAutoPoolUpdates bool = false

@description('Batch data-plane api-version (app setting BATCH_API_VERSION).')
param batchApiVersion string = '2025-06-01'

@description('Per-message time budget for Batch calls including retries, seconds (BATCH_RETRY_BUDGET_SECONDS). At most 240: it must stay inside host.json maxAutoLockRenewalDuration (5 min) with the publish.')
@minValue(1)
@maxValue(240)
param batchRetryBudgetSeconds int = 60

// ---------------------------------------------------------------------------------
// Service Bus
// ---------------------------------------------------------------------------------

@description('Service Bus tier (Standard or Premium; Basic has no topics or sessions).')
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@description('Trigger queue name.')
param jobUpdatesQueueName string = 'job-updates'

@description('Whether the queue requires sessions. Immutable once the queue exists; must match the trigger.')
param queueRequiresSession bool = false

@description('Retries off the lock: a transient failure schedules a copy of the message on the queue (needs Data Sender on the queue). Ignored with sessions. JOB_UPDATES_SCHEDULED_RETRIES.')
param scheduledRetries bool = true

@description('Who settles trigger messages: host (GA trigger, default) or actions (pre-release settlement extension; deploy requirements-settlement.txt and host.json autoCompleteMessages false, docs/host.md). JOB_UPDATES_SETTLEMENT.')
@allowed(['host', 'actions'])
param settlement string = 'host'

@description('Deliveries before dead-lettering; also JOB_UPDATES_MAX_DELIVERY_COUNT.')
@minValue(1)
@maxValue(2000)
param queueMaxDeliveryCount int = 10

@description('Queue peek-lock duration (ISO 8601, at most PT5M).')
param queueLockDuration string = 'PT1M'

@description('Queue duplicate detection on MessageId. Immutable once the queue exists.')
param queueRequiresDuplicateDetection bool = true

@description('Queue duplicate detection window (ISO 8601).')
param queueDuplicateDetectionWindow string = 'PT10M'

@description('Outcome topic name.')
param outcomeTopicName string = 'job-outcomes'

// ---------------------------------------------------------------------------------
// Function app and monitoring
// ---------------------------------------------------------------------------------

@description('Flex Consumption maximum instance count: 40 (the platform minimum) to 1000. Bounds the concurrent load on Batch.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Always-ready instances for the job_update trigger: 1 keeps one instance warm so the first message after a quiet spell does not wait for a cold start; 0 scales to zero (cheapest, slower first message). Each is billed while idle. At most 40.')
@minValue(0)
@maxValue(40)
param alwaysReadyInstanceCount int = 1

@description('Flex Consumption instance memory in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('E-mail for alerts. Empty: no action group.')
param alertEmail string = ''

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

// ---------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

// /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Batch/batchAccounts/{name}
var batchIdParts = split(batchAccountResourceId, '/')
var batchSubscriptionId = batchIdParts[2]
var batchResourceGroupName = batchIdParts[4]
var batchAccountName = batchIdParts[8]

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
  }
}

module serviceBus 'app/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: 'sb-${resourceToken}'
    location: location
    tags: tags
    sku: serviceBusSku
    queueName: jobUpdatesQueueName
    queueRequiresSession: queueRequiresSession
    queueMaxDeliveryCount: queueMaxDeliveryCount
    queueLockDuration: queueLockDuration
    queueRequiresDuplicateDetection: queueRequiresDuplicateDetection
    queueDuplicateDetectionWindow: queueDuplicateDetectionWindow
    topicName: outcomeTopicName
  }
}

// Role on the existing Batch account, in ITS resource group (maybe another subscription).
module batchAccess 'app/batch-access.bicep' = {
  name: 'batch-access-${resourceToken}'
  scope: resourceGroup(batchSubscriptionId, batchResourceGroupName)
  params: {
    batchAccountName: batchAccountName
    principalId: identity.outputs.principalId
    principalType: 'ServicePrincipal'
    allowAutoPoolUpdates: allowAutoPoolUpdates
  }
}

var batchEndpoint = !empty(batchAccountEndpoint) ? batchAccountEndpoint : batchAccess.outputs.accountEndpoint

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    serviceName: 'api'
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyInstanceCount: alwaysReadyInstanceCount
    instanceMemoryMB: instanceMemoryMB
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    jobUpdatesQueueName: serviceBus.outputs.queueName
    jobUpdatesSessionsEnabled: queueRequiresSession
    scheduledRetries: scheduledRetries
    settlement: settlement
    // The SAME parameter as the queue's maxDeliveryCount: the function publishes
    // `given-up` on the last delivery, so both must agree.
    jobUpdatesMaxDeliveryCount: queueMaxDeliveryCount
    outcomeTopicName: serviceBus.outputs.topicName
    batchAllowedEndpoints: batchEndpoint
    batchDefaultEndpoint: batchEndpoint
    batchApiVersion: batchApiVersion
    batchRetryBudgetSeconds: batchRetryBudgetSeconds
  }
  // The host starts as soon as the app exists: its identity must already hold the
  // storage and Service Bus roles, or the first start fails and is retried.
  dependsOn: [
    appAccess
  ]
}

// Data roles of the function's identity, each at the narrowest scope.
module appAccess 'app/access.bicep' = {
  name: 'access-app'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    principalType: 'ServicePrincipal'
    serviceBusNamespaceName: serviceBus.outputs.name
    queueName: serviceBus.outputs.queueName
    topicName: serviceBus.outputs.topicName
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

// Data Sender on the queue, only where retries go off the lock (scheduled copies).
module queueSender 'app/queue-sender.bicep' = if (scheduledRetries && !queueRequiresSession) {
  name: 'queue-sender-app'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    serviceBusNamespaceName: serviceBus.outputs.name
    queueName: serviceBus.outputs.queueName
  }
}

// The same data roles for the deploying developer, so a local run can use the
// cloud resources with `az login` credentials. Only with grantDeveloperAccess.
var developerAccess = grantDeveloperAccess && !empty(principalId)

module userAccess 'app/access.bicep' = if (developerAccess) {
  name: 'access-user'
  scope: rg
  params: {
    principalId: principalId
    principalType: principalType
    serviceBusNamespaceName: serviceBus.outputs.name
    queueName: serviceBus.outputs.queueName
    topicName: serviceBus.outputs.topicName
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module userBatchAccess 'app/batch-access.bicep' = if (developerAccess && principalBatchAccess) {
  name: 'batch-access-user-${resourceToken}'
  scope: resourceGroup(batchSubscriptionId, batchResourceGroupName)
  params: {
    batchAccountName: batchAccountName
    principalId: principalId
    principalType: principalType
    allowAutoPoolUpdates: allowAutoPoolUpdates
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: resourceToken
    tags: tags
    alertEmail: alertEmail
    location: location
    serviceBusNamespaceId: serviceBus.outputs.id
    queueName: serviceBus.outputs.queueName
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

// ---------------------------------------------------------------------------------
// Outputs (azd writes them to .azure/<env>/.env)
// ---------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output SERVICEBUS_NAMESPACE string = serviceBus.outputs.name
output SERVICEBUS_FULLY_QUALIFIED_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output SERVICEBUS_QUEUE_NAME string = serviceBus.outputs.queueName
output SERVICEBUS_TOPIC_NAME string = serviceBus.outputs.topicName
output BATCH_ENDPOINT string = batchEndpoint
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
// Read by the postprovision hook (infra/hooks/check_deploy.py): the app reaches the
// account only with Entra tokens and over its public endpoint.
output BATCH_ACCOUNT_AUTH_MODES array = batchAccess.outputs.allowedAuthenticationModes
output BATCH_ACCOUNT_PUBLIC_NETWORK_ACCESS string = batchAccess.outputs.publicNetworkAccess
output BATCH_ACCOUNT_NETWORK_DEFAULT_ACTION string = batchAccess.outputs.accountAccessDefaultAction
