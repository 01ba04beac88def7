// Data-plane role assignments inside the app's resource group, each at the
// narrowest scope that works:
//   Azure Service Bus Data Receiver  -> the trigger QUEUE (not the namespace)
//   Azure Service Bus Data Sender    -> the outcome TOPIC (not the namespace); on the
//                                       QUEUE only through queue-sender.bicep
//   Storage Blob Data Owner          -> the host storage account (host leases and
//                                       the deployment container)
//   Monitoring Metrics Publisher     -> the Application Insights component
// Used twice by main.bicep: for the function's identity and, optionally, for the
// deploying developer (local runs against the cloud resources).
//
// Role definition GUIDs are written literally: checkov check CKV_JU_6 fails any
// role assignment whose roleDefinitionId is not one of the intended built-in roles.
// Assignment names are deterministic: guid(scope id, principal id, role id).

@description('Object (principal) id that receives the roles.')
param principalId string

@description('Kind of principal.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param principalType string = 'ServicePrincipal'

param serviceBusNamespaceName string
param queueName string
param topicName string
param storageAccountName string
param applicationInsightsName string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: namespace
  name: queueName
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' existing = {
  parent: namespace
  name: topicName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Azure Service Bus Data Receiver on the queue.
resource queueReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, principalId, '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0')
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0')
    principalId: principalId
    principalType: principalType
  }
}

// Azure Service Bus Data Sender on the topic.
resource topicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, principalId, '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39')
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39')
    principalId: principalId
    principalType: principalType
  }
}

// Storage Blob Data Owner on the host storage account.
resource storageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
    principalId: principalId
    principalType: principalType
  }
}

// Monitoring Metrics Publisher on Application Insights (Entra-authenticated ingestion).
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, '3913510d-42f4-4e42-8a64-420c390055eb')
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
    principalId: principalId
    principalType: principalType
  }
}
